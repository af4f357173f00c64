// Facts about processes from /proc.
import { readFileSync } from 'node:fs';
import { parseStartTime } from '../../controller/src/agent/netns-finder.ts';

/** A process's start time (clock ticks since boot), so a reused pid is not mistaken for the process that owned it. */
export function processStartTimeSync(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const start = parseStartTime(stat);
  return start === undefined ? undefined : String(start);
}

/** processStartTimeSync for callers that await it (one small /proc read either way). */
export async function processStartTime(pid: number): Promise<string | undefined> {
  return Promise.resolve(processStartTimeSync(pid));
}

/** True while PID is the very process that had START time. */
export async function isSameProcessAlive(pid: number, start: string): Promise<boolean> {
  return (await processStartTime(pid)) === start;
}
