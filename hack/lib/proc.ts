// Facts about processes from /proc.
import { readFile } from 'node:fs/promises';

/** A process's start time (clock ticks since boot), so a reused pid is not mistaken for the process that owned it. */
export async function processStartTime(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The fields after the parenthesised command name (which may hold spaces); starttime is field 22.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** True while PID is the very process that had START time. */
export async function isSameProcessAlive(pid: number, start: string): Promise<boolean> {
  return (await processStartTime(pid)) === start;
}
