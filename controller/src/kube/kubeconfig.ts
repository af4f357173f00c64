// Where the API server is and how to authenticate, the way client-go looks: $KUBECONFIG
// (the first file), else ~/.kube/config, else in-cluster (service-account token, re-read
// so rotation is picked up). Supports what a DaemonSet and the tests use: CA, client
// certificates, bearer tokens and token files; exec plugins and auth providers are
// refused with a clear message. Not client-node's KubeConfig: see kube-client.ts.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, resolve } from 'node:path';
import { parse } from 'yaml';

export interface KubeCredentials {
  server: URL;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  insecureSkipTlsVerify: boolean;
  tlsServerName?: string;
  /** The bearer token to send now (token files are re-read), if any. */
  token: () => string | undefined;
  /** Where this came from, for messages. */
  source: string;
}

export class KubeconfigError extends Error {
  override name = 'KubeconfigError';
}

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
const TOKEN_REREAD_MS = 60_000;

export function loadCredentials(env: Record<string, string | undefined> = process.env): KubeCredentials {
  const fromEnv = (env.KUBECONFIG ?? '').split(':').find((path) => path !== '' && existsSync(path));
  if (fromEnv) return fromKubeconfigFile(fromEnv);
  if (env.KUBECONFIG) throw new KubeconfigError(`KUBECONFIG=${JSON.stringify(env.KUBECONFIG)}: no such file`);
  const home = resolve(homedir(), '.kube', 'config');
  if (existsSync(home)) return fromKubeconfigFile(home);
  if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT) return inCluster(env.KUBERNETES_SERVICE_HOST, env.KUBERNETES_SERVICE_PORT);
  throw new KubeconfigError('no Kubernetes credentials: set KUBECONFIG, create ~/.kube/config, or run in a pod');
}

function inCluster(host: string, port: string): KubeCredentials {
  const bracketed = host.includes(':') ? `[${host}]` : host;
  return {
    server: new URL(`https://${bracketed}:${port}`),
    ca: readFileSync(`${SERVICE_ACCOUNT_DIR}/ca.crt`),
    insecureSkipTlsVerify: false,
    token: tokenFile(`${SERVICE_ACCOUNT_DIR}/token`),
    source: 'in-cluster service account',
  };
}

type Named<T> = { name?: string } & T;
interface KubeconfigFile {
  'current-context'?: string;
  contexts?: Named<{ context?: { cluster?: string; user?: string } }>[];
  clusters?: Named<{ cluster?: Record<string, unknown> }>[];
  users?: Named<{ user?: Record<string, unknown> }>[];
}

export function fromKubeconfigFile(path: string): KubeCredentials {
  const config = parse(readFileSync(path, 'utf8')) as KubeconfigFile | null;
  const fail = (what: string) => new KubeconfigError(`${path}: ${what}`);
  if (!config || typeof config !== 'object') throw fail('not a kubeconfig');
  const contextName = config['current-context'];
  const context = config.contexts?.find((c) => c.name === contextName)?.context;
  if (!context) throw fail(`current-context ${JSON.stringify(contextName)} not found`);
  const cluster = config.clusters?.find((c) => c.name === context.cluster)?.cluster;
  if (!cluster || typeof cluster.server !== 'string') throw fail(`cluster ${JSON.stringify(context.cluster)} not found or has no server`);
  const user = config.users?.find((u) => u.name === context.user)?.user ?? {};
  if (user.exec !== undefined || user['auth-provider'] !== undefined)
    throw fail('exec plugins and auth providers are not supported; use a token, a token file or a client certificate');
  const base = dirname(path);
  const material = (data: unknown, file: unknown): Buffer | undefined => {
    if (typeof data === 'string') return Buffer.from(data, 'base64');
    if (typeof file === 'string') return readFileSync(resolve(base, file));
    return undefined;
  };
  const token = typeof user.token === 'string' ? user.token : undefined;
  const file = typeof user.tokenFile === 'string' ? resolve(base, user.tokenFile) : undefined;
  return {
    server: new URL(cluster.server),
    ca: material(cluster['certificate-authority-data'], cluster['certificate-authority']),
    cert: material(user['client-certificate-data'], user['client-certificate']),
    key: material(user['client-key-data'], user['client-key']),
    insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] === true,
    tlsServerName: typeof cluster['tls-server-name'] === 'string' ? cluster['tls-server-name'] : undefined,
    token: token !== undefined ? () => token : file !== undefined ? tokenFile(file) : () => undefined,
    source: path,
  };
}

/** A token file re-read at most once a minute (the kubelet rotates projected tokens). */
function tokenFile(path: string): () => string | undefined {
  let token = '';
  let readAt = -Infinity;
  return () => {
    if (performance.now() - readAt > TOKEN_REREAD_MS) {
      token = readFileSync(path, 'utf8').trim();
      readAt = performance.now();
    }
    return token;
  };
}
