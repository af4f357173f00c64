// The Node/V8 flags the agent runs with, unless its operator chose otherwise.

/**
 * Each flag by the name an operator would use to set it either way (`--jitless` or
 * `--no-jitless`, `--max-semi-space-size=N`), and the argument the agent adds otherwise.
 * Why these: the Memory section of docs/design.md, with the benchmarks behind them.
 */
export const AGENT_NODE_FLAGS: readonly { name: string; arg: string }[] = [
  // V8's young generation otherwise grows to tens of MB during a pod burst.
  { name: 'max-semi-space-size', arg: '--max-semi-space-size=1' },
  // No JIT: the compilers' code and output are never paged in (about 13 MB of RSS), and no
  // memory of this privileged process is both writable and executable.
  { name: 'jitless', arg: '--jitless' },
  // What V8 picks itself under the chart's 160Mi limit, set so the heap grows the same way on
  // a node without limits (and in tests): between full collections V8 lets a heap with room for
  // gigabytes grow to 4x its live size, one of this size to about 1.3x. The limit itself is never
  // reached: the container's memory limit comes first.
  { name: 'max-old-space-size', arg: '--max-old-space-size=256' },
];

/** `--no-jitless` -> `jitless`, `--max_semi_space_size=4` -> `max-semi-space-size`. */
function flagName(arg: string): string {
  return arg
    .replace(/^--?(no[-_])?/, '')
    .split('=')[0]!
    .replaceAll('_', '-');
}

/** The agent's flags that neither node's own arguments nor NODE_OPTIONS mention, in either form. */
export function missingAgentNodeFlags(execArgv: readonly string[], nodeOptions: string): string[] {
  const chosen = new Set([...execArgv, ...nodeOptions.split(/\s+/)].filter((arg) => arg.startsWith('-')).map(flagName));
  return AGENT_NODE_FLAGS.filter((flag) => !chosen.has(flag.name)).map((flag) => flag.arg);
}
