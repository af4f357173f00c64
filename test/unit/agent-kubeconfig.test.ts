import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KubeconfigError, fromKubeconfigFile, loadCredentials } from '../../controller/src/kube/kubeconfig.ts';
import { microTime } from '../../controller/src/kube/event-recorder.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), `pnc-kubeconfig-${process.pid}-`));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function kubeconfig(user: string, cluster = 'server: https://127.0.0.1:6443\n    certificate-authority-data: Q0EtREFUQQ=='): string {
  const path = join(dir, 'config');
  writeFileSync(
    path,
    `apiVersion: v1
kind: Config
current-context: here
contexts:
- name: other
  context: {cluster: nowhere, user: nobody}
- name: here
  context: {cluster: c1, user: u1}
clusters:
- name: c1
  cluster:
    ${cluster}
users:
- name: u1
  user:
${user}
`,
  );
  return path;
}

describe('kubeconfig loading', () => {
  it('reads inline client certificates and the CA of the current context', () => {
    const credentials = fromKubeconfigFile(kubeconfig('    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ'));
    expect(credentials.server.href).toBe('https://127.0.0.1:6443/');
    expect(credentials.ca?.toString()).toBe('CA-DATA');
    expect(credentials.cert?.toString()).toBe('CERT');
    expect(credentials.key?.toString()).toBe('KEY');
    expect(credentials.token()).toBeUndefined();
    expect(credentials.insecureSkipTlsVerify).toBe(false);
  });

  it('reads certificate files relative to the kubeconfig, and a bearer token', () => {
    writeFileSync(join(dir, 'ca.crt'), 'CA-FILE');
    const credentials = fromKubeconfigFile(
      kubeconfig('    token: abc.def', 'server: https://192.0.2.10:443\n    certificate-authority: ca.crt\n    tls-server-name: api'),
    );
    expect(credentials.ca?.toString()).toBe('CA-FILE');
    expect(credentials.tlsServerName).toBe('api');
    expect(credentials.token()).toBe('abc.def');
  });

  it('reads a token file', () => {
    writeFileSync(join(dir, 'token'), 'from-file\n');
    expect(fromKubeconfigFile(kubeconfig('    tokenFile: token')).token()).toBe('from-file');
  });

  it('refuses exec plugins with a clear message', () => {
    expect(() => fromKubeconfigFile(kubeconfig('    exec: {command: aws}'))).toThrow(/exec plugins and auth providers are not supported/);
  });

  it('names the file and what is missing', () => {
    const path = join(dir, 'bad');
    writeFileSync(path, 'current-context: ghost\ncontexts: []\n');
    expect(() => fromKubeconfigFile(path)).toThrow(KubeconfigError);
    expect(() => fromKubeconfigFile(path)).toThrow(`${path}: current-context "ghost" not found`);
  });

  it('follows KUBECONFIG (first existing file) and says when it points nowhere', () => {
    const path = kubeconfig('    token: t');
    expect(loadCredentials({ KUBECONFIG: `${join(dir, 'missing')}:${path}` }).source).toBe(path);
    expect(() => loadCredentials({ KUBECONFIG: join(dir, 'missing') })).toThrow(/no such file/);
  });
});

describe('event time', () => {
  it('has exactly six fractional digits (MicroTime)', () => {
    expect(microTime(new Date('2026-11-23T01:02:03.456Z'))).toBe('2026-11-23T01:02:03.456000Z');
  });
});
