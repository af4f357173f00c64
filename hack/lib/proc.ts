// Facts about processes from /proc.
import { readFile } from 'node:fs/promises';
import { parseStartTime } from '../../controller/src/agent/netns-finder.ts';

/** A process's start time (clock ticks since boot), so a reused pid is not mistaken for the process that owned it. */
export async function processStartTime(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  const start = stat === undefined ? undefined : parseStartTime(stat);
  return start === undefined ? undefined : String(start);
}

/** True while PID is the very process that had START time. */
export async function isSameProcessAlive(pid: number, start: string): Promise<boolean> {
  return (await processStartTime(pid)) === start;
}
