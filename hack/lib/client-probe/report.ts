// Shared by the bench:client probes: wait for the expected pod count, let the heap settle,
// then print {syncMs, rssMb, hwmMb, heapMb} as one JSON line and exit.
import { readFileSync } from 'node:fs';
import { statusMiB } from '../stats.ts';

const SETTLE_MS = 2000;

function statusMb(field: 'VmRSS' | 'VmHWM'): number {
  return statusMiB(readFileSync('/proc/self/status', 'utf8'), field);
}

export async function reportWhenSynced(started: number, podCount: () => number): Promise<never> {
  const expected = Number(process.env.PNC_BENCH_PODS);
  while (podCount() < expected) await new Promise((resolve) => setTimeout(resolve, 5));
  const syncMs = Math.round(performance.now() - started);
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  const heapMb = Math.round(process.memoryUsage().heapUsed / 104857.6) / 10;
  console.log(JSON.stringify({ syncMs, rssMb: statusMb('VmRSS'), hwmMb: statusMb('VmHWM'), heapMb }));
  process.exit(0);
}
