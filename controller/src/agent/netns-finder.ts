// Finds a pod's sandbox network namespace without a runtime socket: scan
// /proc/*/cgroup (hostPID) for processes in the pod's cgroup, take their
// /proc/PID/ns/net, skip CRI-O's conmon and the host's netns, keep the oldest
// process (the sandbox's pause process, or the first init container's where CRI-O
// drops the infra container). One scan indexes every pod on the node, so a
// burst of pending pods costs one scan, not one each; results are cached and
// re-validated with two cheap syscalls.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { netnsInodeFromLink } from '../pod-contract/index.ts';
import { cgroupViewOf, ownerOfCgroupFile, type CgroupView } from './cgroup-path.ts';

export interface SandboxNetns {
  pid: number;
  /** Inode of the netns, as in `net:[N]`. */
  inode: number;
  /** `<procRoot>/<pid>/ns/net`, for nsenter. */
  path: string;
  /** Field 22 of /proc/PID/stat: tells a process from a later one with the same PID. */
  startTime: number;
}

/**
 * One sandbox, not just one netns inode: Linux hands a freed netns inode to the next netns, so
 * a recreated sandbox often has its predecessor's inode, never its pid and start time too.
 */
export function sameSandbox(a: Pick<SandboxNetns, 'pid' | 'startTime' | 'inode'>, b: Pick<SandboxNetns, 'pid' | 'startTime' | 'inode'>): boolean {
  return a.pid === b.pid && a.startTime === b.startTime && a.inode === b.inode;
}

export interface NetnsFinderOptions {
  procRoot: string;
  /**
   * The finder's own pod (downward API metadata.uid). From inside a private cgroup namespace
   * its own pod's processes name no pod; this names them. Without it they are nobody's.
   */
  ownPodUid?: string;
  /** Scans closer together than this are coalesced into one. */
  minScanIntervalMs?: number;
}

export class NetnsFinder {
  readonly #procRoot: string;
  readonly #minScanIntervalMs: number;
  readonly #ownPodUid: string | undefined;
  readonly #hostInode: number | undefined;
  readonly #selfInode: number | undefined;
  /** How this process sees the node's cgroup paths, from its own /proc/self/cgroup. */
  readonly cgroupView: CgroupView;
  #byPod = new Map<string, SandboxNetns>();
  #lastScanAt = -Infinity;
  #nextScan: Promise<void> | undefined;
  scans = 0;
  scanError: string | undefined;

  constructor(options: NetnsFinderOptions) {
    this.#procRoot = options.procRoot;
    this.#minScanIntervalMs = options.minScanIntervalMs ?? 20;
    this.#hostInode = this.#inodeOf(`${this.#procRoot}/1/ns/net`);
    this.#selfInode = this.#inodeOf('/proc/self/ns/net');
    let selfCgroup = '';
    try {
      selfCgroup = readFileSync(`${this.#procRoot}/self/cgroup`, 'utf8');
    } catch {
      // Unreadable: the host's view, where the own pod's paths stay unresolved (never misread).
    }
    this.cgroupView = cgroupViewOf(selfCgroup, options.ownPodUid);
    this.#ownPodUid = options.ownPodUid;
  }

  /**
   * The pod's sandbox netns, or undefined when no process of the pod has its own netns
   * yet. Scans only when the last scan is older than `freshMs`: a burst of pods waiting
   * for their sandboxes is served by the SandboxWatcher's scans, not one scan each.
   */
  async find(podUid: string, freshMs = 50): Promise<SandboxNetns | undefined> {
    const cached = this.peek(podUid);
    if (cached || performance.now() - this.#lastScanAt < freshMs) return cached;
    await this.rescan();
    return this.#byPod.get(podUid);
  }

  /** What the last scan found for the pod, if that process still lives; never scans. */
  peek(podUid: string): SandboxNetns | undefined {
    const cached = this.#byPod.get(podUid);
    return cached && this.isAlive(cached) ? cached : undefined;
  }

  /** True while the process still exists with the same netns (cheap: for periodic checks). */
  isAlive(sandbox: SandboxNetns): boolean {
    return this.#inodeOf(sandbox.path) === sandbox.inode && this.#startTimeOf(sandbox.pid) === sandbox.startTime;
  }

  forget(podUid: string): void {
    this.#byPod.delete(podUid);
  }

  /** A fresh scan; every caller waiting here shares one scan that starts after they asked. */
  rescan(): Promise<void> {
    this.#nextScan ??= new Promise<void>((resolve) => {
      const wait = Math.max(0, this.#lastScanAt + this.#minScanIntervalMs - performance.now());
      setTimeout(() => {
        this.#nextScan = undefined;
        try {
          this.#scan();
          this.scanError = undefined;
        } catch (error) {
          // An unreadable proc root finds nothing; the reason shows in SandboxNotFound.
          this.scanError = error instanceof Error ? error.message : String(error);
        } finally {
          this.#lastScanAt = performance.now();
          resolve();
        }
      }, wait);
    });
    return this.#nextScan;
  }

  #scan(): void {
    this.scans++;
    const pidsByPod = new Map<string, number[]>();
    for (const name of readdirSync(this.#procRoot)) {
      const first = name.charCodeAt(0);
      if (first < 48 || first > 57) continue;
      let text: string;
      try {
        text = readFileSync(`${this.#procRoot}/${name}/cgroup`, 'utf8');
      } catch {
        continue; // exited meanwhile
      }
      const owner = ownerOfCgroupFile(text, this.cgroupView);
      // conmon shares the node's netns, which the host check misses when /proc/1 is unreadable.
      if (!owner || owner.conmon) continue;
      const pids = pidsByPod.get(owner.podUid);
      if (pids) pids.push(Number(name));
      else pidsByPod.set(owner.podUid, [Number(name)]);
    }
    const byPod = new Map<string, SandboxNetns>();
    for (const [podUid, pids] of pidsByPod) {
      const sandbox = this.#oldestWithOwnNetns(pids, podUid === this.#ownPodUid);
      if (sandbox) byPod.set(podUid, sandbox);
    }
    this.#byPod = byPod;
  }

  /**
   * ownPod: the finder's own pod, whose netns the finder shares. Any other pod's process in the
   * finder's netns is not in that pod's own (the finder runs in its pod's netns or the host's).
   */
  #oldestWithOwnNetns(pids: number[], ownPod: boolean): SandboxNetns | undefined {
    let best: SandboxNetns | undefined;
    const ownPids = new Set(pids);
    for (const pid of pids) {
      const path = `${this.#procRoot}/${pid}/ns/net`;
      const inode = this.#inodeOf(path);
      if (inode === undefined || inode === this.#hostInode || (inode === this.#selfInode && !ownPod)) continue;
      const stat = this.#statOf(pid);
      if (stat === undefined) continue;
      const { startTime, parentPid } = stat;
      // A sandbox process never shares its netns with a parent outside the pod (the runtime's
      // shim or conmon lives in the node's). One that does is still the runtime's own: runc
      // moves its init into the pod's cgroup before that joins the pod's netns. Needed besides
      // the host check: in a container, /proc/1/ns/net of the node's init may be unreadable.
      if (!ownPids.has(parentPid) && this.#inodeOf(`${this.#procRoot}/${parentPid}/ns/net`) === inode) continue;
      if (!best || startTime < best.startTime || (startTime === best.startTime && pid < best.pid)) best = { pid, inode, path, startTime };
    }
    return best;
  }

  #inodeOf(path: string): number | undefined {
    try {
      return netnsInodeFromLink(readlinkSync(path));
    } catch {
      return undefined;
    }
  }

  #startTimeOf(pid: number): number | undefined {
    return this.#statOf(pid)?.startTime;
  }

  #statOf(pid: number): { startTime: number; parentPid: number } | undefined {
    let text: string;
    try {
      text = readFileSync(`${this.#procRoot}/${pid}/stat`, 'utf8');
    } catch {
      return undefined;
    }
    const startTime = parseStartTime(text);
    const parentPid = Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]);
    return startTime === undefined || !Number.isSafeInteger(parentPid) ? undefined : { startTime, parentPid };
  }
}

/** Field 22 (starttime) of /proc/PID/stat; the command name (field 2) may contain spaces and parentheses. */
export function parseStartTime(stat: string): number | undefined {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const value = Number(fields[19]);
  return Number.isSafeInteger(value) ? value : undefined;
}
