// init-waiter: the first init container of a mesh pod. Holds the pod until the node's
// controller has marked it initialized FOR THIS network namespace and (unless turned
// off) outbound capture demonstrably works; on timeout it exits with the reason.
// Node's standard library only: the bundle is tiny and starts fast in any pod.
import { readFileSync, readlinkSync } from 'node:fs';
import { netnsInodeFromLink } from '../../controller/src/mark.ts';
import { watchAnnotations } from './annotations-watcher.ts';
import type { AnnotationsSnapshot } from './annotations-watcher.ts';
import { EXIT, exitCodeForTimeout } from './exit-codes.ts';
import { HelpRequested, parseOptions, USAGE, UsageError } from './options.ts';
import type { WaiterOptions } from './options.ts';
import { podHasIpv6 } from './pod-addresses.ts';
import { chooseProbeTarget, ProbeTargetError } from './probe-target.ts';
import type { Family, ProbeTarget } from './probe-target.ts';
import { assessMark } from './readiness.ts';
import type { Waiting } from './readiness.ts';
import { runSelfTest } from './self-test.ts';

const STILL_WAITING_LOG_MS = 5_000;
const SELF_TEST_RETRY_MS = 1_000;
const SELF_TEST_TIMEOUT_MS = 1_000;

const startedAt = performance.now();

function log(message: string): void {
  const elapsed = ((performance.now() - startedAt) / 1000).toFixed(3);
  process.stdout.write(`init-waiter [+${elapsed}s] ${message}\n`);
}

function exit(code: number, message: string): never {
  const cpu = process.cpuUsage();
  log(`${message} (exit ${code}, peak RSS ${peakRss()}, cpu ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms)`);
  process.exit(code);
}

/**
 * VmHWM: the peak resident set, which the container's memory limit must cover; RssAnon: the
 * part that is the waiter's own (the rest is the node binary's file pages, shared and reclaimable).
 */
function peakRss(): string {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const mib = (field: string) => {
      const kib = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1];
      return kib ? `${(Number(kib) / 1024).toFixed(1)} MiB` : 'unknown';
    };
    return `${mib('VmHWM')}, anonymous ${mib('RssAnon')}`;
  } catch {
    return 'unknown';
  }
}

function main(): void {
  let options: WaiterOptions;
  try {
    options = parseOptions(process.argv.slice(2), process.env);
  } catch (error) {
    if (error instanceof HelpRequested) {
      process.stdout.write(`${USAGE}\n`);
      process.exit(EXIT.ready);
    }
    if (error instanceof UsageError) {
      process.stderr.write(`init-waiter: ${error.message}\n${USAGE}\n`);
      process.exit(EXIT.usage);
    }
    throw error;
  }

  const ownNetns = netnsInodeFromLink(readlinkSync('/proc/self/ns/net'));
  const families: Family[] = podHasIpv6() ? ['ipv4', 'ipv6'] : ['ipv4'];
  let snapshot: AnnotationsSnapshot | undefined;
  let current: Waiting = { code: 'no-file', message: 'starting' };
  let selfTestRunning = false;
  let reassessAfterSelfTest = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let reportedProblems: string | undefined;
  // Installed before the first log line, so a SIGTERM after it is always answered with the reason.
  process.on('SIGTERM', () => exit(EXIT.terminated, `terminated while waiting: ${current.message}`));
  log(
    `waiting for ${options.annotationsFile} to mark netns ${ownNetns} initialized; ` +
      `self-test ${options.validate ? `on (${families.join('+')}, proxy port ${options.proxyPort})` : 'off'}; ` +
      `uid ${process.getuid?.()}; timeout ${options.timeoutMs / 1000} s`,
  );

  const setWaiting = (next: Waiting) => {
    if (next.message !== current.message) log(`waiting: ${next.message}`);
    current = next;
  };

  // Exiting releases the watch: nothing is left to close by hand.
  const succeed = (message: string): never => exit(EXIT.ready, `ready: ${message}`);

  const probeTargets = (annotations: ReadonlyMap<string, string>): ProbeTarget[] =>
    families.flatMap((family) => chooseProbeTarget(annotations, family, options.probeAddresses[family], options.probePort) ?? []);

  const assess = () => {
    if (!snapshot) return;
    if (selfTestRunning) {
      // Judge the new content only once the running test is over, so a pass never outlives its mark.
      reassessAfterSelfTest = true;
      return;
    }
    clearTimeout(retryTimer);
    const verdict = assessMark(snapshot, ownNetns);
    if (verdict.parsed && verdict.parsed.problemCount > 0) {
      const problems = `${verdict.parsed.problemCount} malformed line(s) in ${options.annotationsFile} ignored: ${verdict.parsed.problems.join('; ')}`;
      if (problems !== reportedProblems) log(problems);
      reportedProblems = problems;
    }
    if (!verdict.ready) {
      setWaiting(verdict.waiting);
      return;
    }
    const markSummary = `${verdict.mark.rules ? `rules ${verdict.mark.rules}, ` : ''}marked at ${verdict.mark.at || 'unknown time'}`;
    if (!options.validate) succeed(`pod-network-controller marked netns ${ownNetns} initialized (${markSummary}); self-test off`);
    let targets: ProbeTarget[];
    try {
      targets = probeTargets(verdict.parsed.annotations);
    } catch (error) {
      if (!(error instanceof ProbeTargetError)) throw error;
      setWaiting({ code: 'self-test', message: `cannot run the redirect self-test: ${error.message}` });
      return;
    }
    if (targets.length === 0) {
      succeed(`netns ${ownNetns} marked initialized (${markSummary}); the pod's annotations capture no outbound traffic, nothing to self-test`);
    }
    // So a timeout during the first test names the test, not the state before the mark came.
    if (current.code !== 'self-test') setWaiting({ code: 'self-test', message: 'the mark is right; running the redirect self-test' });
    selfTestRunning = true;
    runSelfTest({ proxyPort: options.proxyPort, targets, timeoutMs: SELF_TEST_TIMEOUT_MS }).then(
      (result) => {
        selfTestRunning = false;
        // The mark may have changed while the test ran: only pass on what is current now.
        if (reassessAfterSelfTest) {
          reassessAfterSelfTest = false;
          assess();
          return;
        }
        if (result.ok) {
          succeed(`netns ${ownNetns} marked initialized (${markSummary}); self-test passed: ${result.summary}`);
          return;
        }
        setWaiting({ code: 'self-test', message: result.reason });
        retryTimer = setTimeout(assess, SELF_TEST_RETRY_MS);
      },
      (error: unknown) => exit(EXIT.internalError, `self-test crashed: ${error instanceof Error ? error.stack : String(error)}`),
    );
  };

  watchAnnotations(options.annotationsFile, (next) => {
    snapshot = next;
    assess();
  });

  setInterval(() => log(`still waiting: ${current.message}`), STILL_WAITING_LOG_MS).unref();
  setTimeout(() => {
    // The controller's Warning Events say why a mark never came (e.g. MarkWriteFailed: no room left for it in the annotations).
    const hint = current.code === 'no-mark' ? "; the controller's Events on this pod (kubectl describe pod) say why, e.g. MarkWriteFailed" : '';
    exit(exitCodeForTimeout(current.code), `timed out after ${options.timeoutMs / 1000} s: ${current.message}${hint}`);
  }, options.timeoutMs);
}

try {
  main();
} catch (error) {
  exit(EXIT.internalError, `internal error: ${error instanceof Error ? error.stack : String(error)}`);
}
