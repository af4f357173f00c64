// Small helpers the benchmarks share: quantiles of samples and memory figures from /proc.

/** Nearest-rank q-quantile (q in 0..1) of the samples, in any order; NaN when there are none. */
export function quantile(samples: readonly number[], q: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** VmRSS or VmHWM of a /proc/PID/status text, in MiB with one decimal; NaN when absent. */
export function statusMiB(status: string, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return match ? Math.round(Number(match[1]) / 102.4) / 10 : NaN;
}
