// Small helpers the benchmarks share: quantiles of samples and memory figures from /proc.

/** Nearest-rank q-quantile (q in 0..1) of the samples, in any order; NaN when there are none. */
export function quantile(samples: readonly number[], q: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** The memory fields of /proc/PID/status the benchmarks report. */
export type StatusField = 'VmRSS' | 'VmHWM' | 'RssAnon' | 'RssFile';

/**
 * A memory field of a /proc/PID/status text, in MiB with one decimal; NaN when absent.
 * VmRSS = RssAnon (the process's own memory) + RssFile (pages of node's binary and
 * libraries it touched, shared with every other node process) + RssShmem.
 */
export function statusMiB(status: string, field: StatusField): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return match ? Math.round(Number(match[1]) / 102.4) / 10 : NaN;
}

/**
 * CPU time (user + system) of a /proc/PID/stat text, in seconds: the process's own, and its
 * children's that it has waited for (nsenter, iptables, ip for the agent). The clock tick is
 * 100 Hz on Linux.
 */
export function statCpuSeconds(stat: string): { own: number; children: number } {
  // Fields after the command name, which may hold spaces and parentheses: state is field 3, utime 14 .. cstime 17.
  const fields = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  return { own: (fields[11]! + fields[12]!) / 100, children: (fields[13]! + fields[14]!) / 100 };
}
