// `prepare-uninstall`: what the Helm chart's pre-delete hook runs before anything of the release
// is deleted. It removes the injection first, so no new pod gets a waiter that no agent will
// ever answer, then waits while the agents, still running, mark the pods that were injected
// before. Helm deletes the DaemonSet before the admission policies; without this, a pod
// injected in between would wait in Init for ever.
import { parseArgs } from 'node:util';
import type { V1Pod } from '@kubernetes/client-node';
import { KubeApiError, KubeClient } from '../kube/kube-client.ts';
import { loadCredentials } from '../kube/kubeconfig.ts';
import { MarkFormatError, parseMark, STATUS_ANNOTATION } from '../pod-contract/index.ts';

export const prepareUninstallHelp = `  prepare-uninstall [--binding NAME] [--api-version v1|v1beta1] [--waiter-container NAME] [--timeout SECONDS]
    Before an uninstall (the Helm chart's pre-delete hook): deletes the injection's
    MutatingAdmissionPolicyBinding NAME, then waits (at most --timeout, default 120) until no
    pod in the cluster awaits its mark: every pod whose waiter has not finished is marked
    initialized or error. Pods still awaiting at the timeout are listed; the uninstall goes on.
`;

export const PREPARE_UNINSTALL_OPTIONS = {
  binding: { type: 'string' },
  'api-version': { type: 'string', default: 'v1' },
  'waiter-container': { type: 'string', default: 'pnc-init-waiter' },
  timeout: { type: 'string', default: '120' },
  help: { type: 'boolean', short: 'h' },
} as const;
const API_VERSIONS = ['v1', 'v1beta1'];
const POLL_MS = 1_000;

/**
 * True when POD waits for an agent: it is not being deleted, has the waiter WAITER as an
 * init container that has not finished, and carries no final mark (initialized, or error:
 * the agent has decided, and will not change its mind by itself).
 */
export function awaitsItsMark(pod: V1Pod, waiter: string): boolean {
  if (pod.metadata?.deletionTimestamp) return false;
  if (pod.status?.phase !== undefined && pod.status.phase !== 'Pending') return false;
  if (!pod.spec?.initContainers?.some((container) => container.name === waiter)) return false;
  const status = pod.status?.initContainerStatuses?.find((container) => container.name === waiter);
  if (status?.state?.terminated?.exitCode === 0) return false;
  const text = pod.metadata?.annotations?.[STATUS_ANNOTATION];
  if (text === undefined) return true;
  try {
    return parseMark(text).state === 'pending';
  } catch (error) {
    if (error instanceof MarkFormatError) return true;
    throw error;
  }
}

export async function prepareUninstallCommand(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({ args, options: PREPARE_UNINSTALL_OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (error) {
    process.stderr.write(`prepare-uninstall: ${(error as Error).message}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`Usage: node dist/controller.js ${prepareUninstallHelp}`);
    return 0;
  }
  const timeoutSeconds = Number(values.timeout);
  if (!/^\d+$/.test(values.timeout) || timeoutSeconds < 1) {
    process.stderr.write(`prepare-uninstall: --timeout ${JSON.stringify(values.timeout)} is not a whole number of seconds (1 or more)\n`);
    return 2;
  }
  if (!API_VERSIONS.includes(values['api-version'])) {
    process.stderr.write(`prepare-uninstall: --api-version ${JSON.stringify(values['api-version'])} is not one of ${API_VERSIONS.join(', ')}\n`);
    return 2;
  }
  const say = (line: string) => process.stdout.write(`prepare-uninstall: ${line}\n`);
  const client = new KubeClient(loadCredentials());
  try {
    if (values.binding) {
      const path = `/apis/admissionregistration.k8s.io/${values['api-version']}/mutatingadmissionpolicybindings/${encodeURIComponent(values.binding)}`;
      try {
        await client.request('DELETE', path);
        say(`deleted the injection binding ${values.binding}: new pods get no waiter`);
      } catch (error) {
        if (!(error instanceof KubeApiError && error.status === 404)) throw error;
        say(`the injection binding ${values.binding} is already gone`);
      }
    }
    const deadline = Date.now() + timeoutSeconds * 1_000;
    for (;;) {
      const awaiting: string[] = [];
      await client.list<V1Pod>('/api/v1/pods?fieldSelector=status.phase%3DPending', (pod) => {
        if (awaitsItsMark(pod, values['waiter-container'])) awaiting.push(`${pod.metadata?.namespace}/${pod.metadata?.name}`);
      });
      if (awaiting.length === 0) {
        say('no pod awaits its mark');
        return 0;
      }
      if (Date.now() >= deadline) {
        say(
          `after ${timeoutSeconds} s, ${awaiting.length} pod(s) still await their mark and will stay in Init; delete them once the agent is gone: ${awaiting.join(' ')}`,
        );
        return 0;
      }
      say(`${awaiting.length} pod(s) await their mark: ${awaiting.slice(0, 10).join(' ')}${awaiting.length > 10 ? ' ...' : ''}`);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  } finally {
    client.close();
  }
}
