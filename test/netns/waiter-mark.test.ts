// The init-waiter as a pod runs it (UID 65534, inside the pod's netns, annotations in a
// kubelet-style downward-API volume): what it waits for, what it says, how it exits.
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeMark, encodeNetnsRecord, STATUS_ANNOTATION, type Mark } from '../../controller/src/pod-contract/index.ts';
import { writeNetnsRecord } from '../../controller/src/redirect/index.ts';
import { writeAnnotationsVolume, writeAtomicVolume } from '../../hack/lib/downward-api.ts';
import { isRoot, ROOT_SKIP_MESSAGE } from '../../hack/lib/netns.ts';
import { must, run as runCommand } from '../../hack/lib/process.ts';
import { initializedMarkFor, markInitialized } from '../../hack/lib/waiter-process.ts';
import { useWaiterSandbox } from '../support/waiter-sandbox.ts';

if (!isRoot) console.warn(`waiter-mark.test.ts ${ROOT_SKIP_MESSAGE}`);

describe.skipIf(!isRoot)('init-waiter waiting for the mark', () => {
  const waiter = useWaiterSandbox();
  const { freshVolume, start } = waiter;

  const mark = (fields: Parameters<typeof encodeMark>[0]) => ({ [STATUS_ANNOTATION]: encodeMark(fields), 'app.example/x': 'y' });
  const ours = () => initializedMarkFor(waiter.netns, 'abc123');
  /** The agent's own code records the mark in the pod netns (lo's alias). */
  const record = (fields: Mark) => writeNetnsRecord(waiter.netns, encodeNetnsRecord(fields));

  it('without a mark keeps waiting and times out with the "no mark" reason and exit 3 (settings from env)', async () => {
    const { dir, file: annotationsFile } = freshVolume();
    writeAnnotationsVolume(dir, { 'sidecar.istio.io/status': '{"containers":["istio-proxy"]}' });
    const run = start([], { env: { PNC_WAITER_ANNOTATIONS_FILE: annotationsFile, PNC_WAITER_TIMEOUT: '1.5' } });
    const exit = await run.exited;
    expect(exit.code).toBe(3);
    expect(run.output()).toMatch(/timed out after 1\.5 s: no pod-network-controller\.io\/status annotation yet/);
    expect(run.output()).toContain("the controller's Events on this pod (kubectl describe pod) say why, e.g. MarkWriteFailed");
    expect(run.output()).toMatch(/uid 65534/);
  });

  it('does not pass on a mark for another network namespace (exit 5, names both inodes)', async () => {
    const { dir, file: annotationsFile } = freshVolume();
    const other = waiter.sandbox.inode + 1;
    writeAnnotationsVolume(dir, mark({ state: 'initialized', netns: other, rules: 'feedc0de', at: new Date().toISOString() }));
    const run = start(['--annotations-file', annotationsFile, '--timeout', '1.5', '--validate', 'false']);
    const exit = await run.exited;
    expect(exit.code).toBe(5);
    expect(run.output()).toContain(`is for network namespace ${other}, but this pod's is ${waiter.sandbox.inode}`);
    expect(run.output()).not.toMatch(/ready:/);
  });

  it('reports the reason of an error mark (exit 4)', async () => {
    const { dir, file: annotationsFile } = freshVolume();
    const reason = 'iptables-restore failed in netns: "nat" table busy';
    writeAnnotationsVolume(dir, mark({ state: 'error', reason, at: new Date().toISOString() }));
    const run = start(['--annotations-file', annotationsFile, '--timeout', '1.5']);
    const exit = await run.exited;
    expect(exit.code).toBe(4);
    expect(run.output()).toContain(`timed out after 1.5 s: ${STATUS_ANNOTATION} is error: ${reason}`);
  });

  it('gives up on an error mark that stood for the error grace (exit 4), its reason in the termination message file', async () => {
    const { dir, file: annotationsFile } = freshVolume();
    // As the kubelet makes it: an empty file any UID may write.
    const terminationLog = join(dir, 'termination-log');
    writeFileSync(terminationLog, '');
    chmodSync(terminationLog, 0o666);
    const reason = 'refused: container "app" runAsUser=1337 equals the proxy identity (uid 1337, gid 1337)';
    writeAnnotationsVolume(dir, mark({ state: 'error', reason, at: new Date().toISOString() }));
    const run = start(['--annotations-file', annotationsFile, '--timeout', '30', '--error-grace', '0.5'], {
      env: { PNC_WAITER_TERMINATION_MESSAGE_PATH: terminationLog },
    });
    const exit = await run.exited;
    expect(exit.code).toBe(4);
    const message = readFileSync(terminationLog, 'utf8');
    expect(message).toBe(
      `gave up after 0.5 s of an error mark: ${STATUS_ANNOTATION} is error: ${reason}; ` +
        'the kubelet restarts this container, and the pod starts once the controller marks it initialized',
    );
    expect(run.output()).toContain(`${message} (exit 4, peak RSS`);
  });

  it('writes no termination message file where none exists', async () => {
    const { dir, file: annotationsFile } = freshVolume();
    writeAnnotationsVolume(dir, mark({ state: 'error', reason: 'bad annotation', at: new Date().toISOString() }));
    const missing = join(dir, 'no-such-termination-log');
    const run = start(['--annotations-file', annotationsFile, '--error-grace', '0', '--termination-message-path', missing]);
    expect((await run.exited).code).toBe(4);
    expect(existsSync(missing)).toBe(false);
  });

  it('passes once a missing file appears with its own netns (self-test off)', async () => {
    const { dir, file: annotationsFile } = freshVolume();
    const run = start(['--annotations-file', annotationsFile, '--timeout', '20', '--validate=false']);
    await run.waitForOutput(/does not exist yet/);
    writeAnnotationsVolume(dir, mark({ state: 'pending', reason: 'waiting for the node agent', at: new Date().toISOString() }));
    await run.waitForOutput(/is pending: waiting for the node agent/);
    await markInitialized(dir, waiter.netns, { 'app.example/x': 'y' }, ours());
    const exit = await run.exited;
    expect(exit.code).toBe(0);
    expect(run.output()).toMatch(new RegExp(`ready: .*netns ${waiter.sandbox.inode} initialized .*self-test off`));
    expect(run.output()).toMatch(/peak RSS \d+\.\d MiB/);
  });

  it('survives a huge file, binary garbage and a million lines, says so, and still passes on a good mark', async () => {
    const { dir, file: annotationsFile } = freshVolume();
    const run = start(['--annotations-file', annotationsFile, '--timeout', '30', '--validate', 'false']);
    writeAtomicVolume(dir, { annotations: Buffer.alloc(3 * 1024 * 1024, 'a') });
    await run.waitForOutput(/is 3145728 bytes, over the \d+-byte limit; not reading it/);

    const garbage = Buffer.alloc(64 * 1024);
    for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 7919 + 13) % 256;
    writeAtomicVolume(dir, { annotations: garbage });
    await run.waitForOutput(/malformed line\(s\) in .* ignored: line 1: /);

    writeAtomicVolume(dir, { annotations: 'x\n'.repeat(1_000_000) });
    await run.waitForOutput(/1000000 malformed line\(s\)/);

    await markInitialized(dir, waiter.netns, {}, ours());
    const exit = await run.exited;
    expect(exit.code).toBe(0);
    expect(run.output()).toMatch(/ready: /);
  });

  it('does not pass on a mark naming its netns inode without the netns record (a reused inode, or an older agent): exit 5', async () => {
    const { dir, file: annotationsFile } = freshVolume();
    writeAnnotationsVolume(dir, mark(ours()));
    const run = start(['--annotations-file', annotationsFile, '--timeout', '1.5', '--validate', 'false']);
    const exit = await run.exited;
    expect(exit.code).toBe(5);
    expect(run.output()).toContain(`is initialized for network namespace ${waiter.sandbox.inode}, but lo has no netns record of it`);
    expect(run.output()).not.toMatch(/ready:/);
  });

  it('passes within milliseconds of the agent recording the mark in the netns, before the file shows it', async () => {
    const { dir, file: annotationsFile } = freshVolume();
    writeAnnotationsVolume(dir, mark({ state: 'pending', reason: 'programming', at: new Date().toISOString() }));
    const run = start(['--annotations-file', annotationsFile, '--timeout', '20', '--validate', 'false']);
    await run.waitForOutput(/is pending: programming/);
    const initialized = ours();
    const recordingAt = performance.now();
    await record(initialized);
    const exit = await run.exited;
    expect(exit.code).toBe(0);
    expect(run.output()).toContain(`ready: pod-network-controller recorded netns ${waiter.sandbox.inode} initialized (rules abc123, mark test-mark-0001`);
    // The agent's `ip` run, a 25 ms poll and a process exit: far below the kubelet's ~1 s refresh of the file.
    expect(exit.at - recordingAt).toBeLessThan(300);
    console.log(`waiter exited ${Math.round(exit.at - recordingAt)} ms after the agent started writing the netns record`);
  });

  it("only NET_ADMIN in the netns writes the record: the waiter's UID, and root without NET_ADMIN, get EPERM", async () => {
    const name = waiter.sandbox.pod.name;
    const asNobody = runCommand([
      'ip',
      'netns',
      'exec',
      name,
      'nsenter',
      '--setuid=65534',
      '--setgid=65534',
      '--',
      'ip',
      'link',
      'set',
      'dev',
      'lo',
      'alias',
      'forged',
    ]);
    expect(asNobody.code).not.toBe(0);
    expect(asNobody.stderr).toContain('Operation not permitted');
    const viaSysfs = runCommand(
      ['ip', 'netns', 'exec', name, 'nsenter', '--setuid=65534', '--setgid=65534', '--', 'tee', '/sys/class/net/lo/ifalias'],
      'forged\n',
    );
    expect(viaSysfs.code).not.toBe(0);
    expect(viaSysfs.stderr).toContain('Permission denied');
    const rootWithoutNetAdmin = runCommand([
      'ip',
      'netns',
      'exec',
      name,
      'setpriv',
      '--bounding-set=-net_admin',
      '--',
      'ip',
      'link',
      'set',
      'dev',
      'lo',
      'alias',
      'forged',
    ]);
    expect(rootWithoutNetAdmin.code).not.toBe(0);
    expect(rootWithoutNetAdmin.stderr).toContain('Operation not permitted');
    const readAs = (uid: number) =>
      runCommand(['ip', 'netns', 'exec', name, 'nsenter', `--setuid=${uid}`, `--setgid=${uid}`, '--', 'cat', '/sys/class/net/lo/ifalias']);
    expect(readAs(0).stdout, 'no alias was written').toBe('');
    // ...while the waiter's UID reads it.
    await record(ours());
    const read = readAs(65534);
    expect(read.stdout).toBe(`pod-network-controller/2 netns=${waiter.sandbox.inode} rules=abc123 id=test-mark-0001\n`);
  });

  it('does not pass a malformed mark and names the bad value (exit 7)', async () => {
    const { dir, file: annotationsFile } = freshVolume();
    writeAnnotationsVolume(dir, { [STATUS_ANNOTATION]: '{"state":"initialized","netns":"not-a-number"}' });
    const run = start(['--annotations-file', annotationsFile, '--timeout', '1', '--validate', 'false']);
    const exit = await run.exited;
    expect(exit.code).toBe(7);
    expect(run.output()).toContain(`${STATUS_ANNOTATION} has an invalid netns "not-a-number"`);
  });

  it('a FIFO planted at the path does not hang it (exit 7, "not a regular file")', async () => {
    const { dir } = freshVolume();
    const fifo = join(dir, 'annotations');
    must(['mkfifo', '-m', '0644', fifo]);
    const run = start(['--annotations-file', fifo, '--timeout', '1']);
    const exit = await run.exited;
    expect(exit.code).toBe(7);
    expect(run.output()).toContain('not a regular file');
  });

  it('on SIGTERM (pod deleted) exits 143 and says what it was waiting for', async () => {
    const { dir, file: annotationsFile } = freshVolume();
    writeAnnotationsVolume(dir, mark({ state: 'pending', reason: 'netns not found yet', at: new Date().toISOString() }));
    const run = start(['--annotations-file', annotationsFile]);
    await run.waitForOutput(/is pending: netns not found yet/);
    run.child.kill('SIGTERM');
    const exit = await run.exited;
    expect(exit.code).toBe(143);
    expect(run.output()).toMatch(/terminated while waiting: .* is pending: netns not found yet \(exit 143/);
  });

  it('rejects bad flags and env values with exit 2 and the usage', async () => {
    freshVolume();
    const badFlag = start(['--timeout', 'soon']);
    expect((await badFlag.exited).code).toBe(2);
    expect(badFlag.output()).toContain('--timeout: "soon" is not a number of seconds');
    expect(badFlag.output()).toContain('usage: node init-waiter.js');
    const badEnv = start([], { env: { PNC_WAITER_PROXY_PORT: '70000' } });
    expect((await badEnv.exited).code).toBe(2);
    expect(badEnv.output()).toContain('PNC_WAITER_PROXY_PORT: "70000" is not a port');
  });
});
