// `run`: the node agent, the DaemonSet's main process.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Agent } from '../agent/agent.ts';
import { type AgentConfig, ConfigError, configHelp, type FlagOptions, nodeRedirectConfig, parseConfig, settingOptions } from '../agent/config.ts';
import { boundedLogStream } from '../agent/log-stream.ts';
import { detectNodeFamilies, withEnabledFamilies } from '../agent/node-families.ts';
import { missingAgentNodeFlags } from '../agent/node-runtime-flags.ts';
import { type IptablesModeDecision, NodeConfigError, type ValidatedNodeConfig, detectIptablesMode, probeFamily } from '../redirect/index.ts';

export const runHelp = `  run [flags]
    The node agent: watches this node's pods, programs and verifies the redirect in each
    eligible pod's network namespace, and marks the pod. Kubernetes credentials from
    KUBECONFIG, ~/.kube/config or in-cluster. Every setting is an environment variable and a flag (flags win):
${configHelp()}
`;

/**
 * The agent's Node flags (AGENT_NODE_FLAGS: small young generations, no JIT) only work at
 * start-up, so the agent re-executes itself with those the operator has not set: execve keeps
 * the PID, so signals (SIGTERM, SIGKILL) and the container runtime see one process.
 *
 * The same re-exec caps glibc's malloc arenas at 2 (MALLOC_ARENA_MAX, read only at start):
 * Node's GC and libuv threads otherwise each get an arena that keeps freed native memory.
 * An operator's value wins. The measurements: the Memory section of docs/design.md.
 */
function reexecWithAgentNodeFlags(): void {
  if (typeof process.execve !== 'function' || !process.argv[1]) return;
  const missing = missingAgentNodeFlags(process.execArgv, process.env.NODE_OPTIONS ?? '');
  if (missing.length === 0) return;
  process.execve(process.execPath, [process.execPath, ...missing, ...process.execArgv, ...process.argv.slice(1)], { MALLOC_ARENA_MAX: '2', ...process.env });
}

/** `run`'s flags (node:util parseArgs options): every setting, and help. */
export const RUN_OPTIONS = { ...settingOptions(), help: { type: 'boolean', short: 'h' } } satisfies FlagOptions;

export async function runCommand(args: string[]): Promise<number> {
  // Not strict: parseConfig judges the settings' flags and words their errors.
  if (parseArgs({ args, options: RUN_OPTIONS, strict: false, allowPositionals: true }).values.help === true) {
    process.stdout.write(`Usage: node dist/controller.js run [flags]\n\n${runHelp}`);
    return 0;
  }
  let config: AgentConfig;
  let redirectConfig: ValidatedNodeConfig;
  try {
    config = parseConfig(process.env, args);
    redirectConfig = nodeRedirectConfig(config);
  } catch (error) {
    if (error instanceof ConfigError || error instanceof NodeConfigError) {
      process.stderr.write(`run: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  reexecWithAgentNodeFlags();
  const logStream = boundedLogStream();
  const log = pino({ level: config.logLevel, base: { node: config.nodeName }, timestamp: pino.stdTimeFunctions.isoTime }, logStream.stream);
  let decision: IptablesModeDecision;
  try {
    // The node's rules are in PID 1's netns (hostPID), not in this pod's own.
    decision =
      config.iptablesMode === 'auto'
        ? await detectIptablesMode(join(config.procRoot, '1/ns/net'))
        : { mode: config.iptablesMode, why: 'set by PNC_IPTABLES_MODE' };
  } catch (error) {
    log.fatal({ err: error }, 'cannot decide the iptables mode (set PNC_IPTABLES_MODE=legacy or nft)');
    return 1;
  }
  const iptablesMode = decision.mode;
  log.info({ iptablesMode, why: decision.why }, `iptables-${iptablesMode}: ${decision.why}`);

  const nodeFamilies = await detectNodeFamilies(config.families, (family) => probeFamily(family, iptablesMode, { procRoot: config.procRoot }));
  for (const [family, why] of nodeFamilies.missing) {
    log.warn({ family, why }, `not redirecting ${family}: ${why}; pods that need ${family} are refused (FamilyUnavailable)`);
  }
  if (nodeFamilies.enabled.length === 0) {
    log.fatal({ families: config.families }, `this node can redirect none of PNC_FAMILIES=${config.families.join(',')}`);
    return 1;
  }
  // Validated as configured above; now planned with what the node has.
  redirectConfig = nodeRedirectConfig(withEnabledFamilies(config, nodeFamilies));

  let agent: Agent;
  try {
    agent = new Agent({ config, redirectConfig, iptablesMode, nodeFamilies, log });
    logStream.onDrop(() => agent.metrics.logLinesDropped.inc());
  } catch (error) {
    log.fatal({ err: error }, 'cannot start (Kubernetes credentials?)');
    return 1;
  }
  const stopped = new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'stopping: draining in-flight work');
      agent.stop().then(
        () => {
          log.info('stopped');
          resolve(0);
        },
        (error: unknown) => {
          log.error({ err: error }, 'error while stopping');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  try {
    await agent.start();
  } catch (error) {
    log.fatal({ err: error }, 'cannot start');
    await agent.stop();
    return 1;
  }
  const code = await stopped;
  // Idle keep-alive sockets of the API client must not keep a stopped agent alive.
  setTimeout(() => process.exit(code), 2_000).unref();
  return code;
}
