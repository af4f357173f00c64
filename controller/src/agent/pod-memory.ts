// What the agent remembers about each pod between passes, changed only through named
// transitions. Dropped when the pod is deleted or stops being eligible. Times are
// monotonic milliseconds (performance.now() in the agent).
import { resourceVersionAtLeast } from '../kube/pod-status-writer.ts';
import type { FindingKind } from './bypass-audit.ts';
import { type SandboxNetns, sameSandbox } from './netns-finder.ts';

/** A verification that passed: what the mark said, in which sandbox it was verified, and when. */
export interface Verified {
  markText: string;
  sandbox: Pick<SandboxNetns, 'pid' | 'startTime' | 'inode'>;
  hash: string;
  at: number;
}

/** What the pure decision reads. */
export interface PodMemoryView {
  readonly firstSeenAt: number;
  /** resourceVersion of our last mark write, until the watch delivers it. */
  readonly awaitingEcho: { readonly resourceVersion: string; readonly at: number } | undefined;
  /** A mark write got no answer: it may have landed, and the cache cannot say until the watch delivers it. */
  readonly writeUncertain: boolean;
  readonly sandboxNotFoundReported: boolean;
  /** The sandbox last found, and when first found for the programming to come (start of the mark latency). */
  readonly sandbox: SandboxNetns | undefined;
  readonly sandboxFoundAt: number | undefined;
  readonly verified: Readonly<Verified> | undefined;
  /** This process has made sure the current mark's Event exists (written it, or checked after a restart). */
  readonly markEventKnown: boolean;
  /** The bypass warning last given: its sandbox's netns and note. */
  readonly bypassWarned: { readonly inode: number; readonly note: string } | undefined;
  /** The pod's series of the bypass gauge: its labels and the findings published. */
  readonly bypassGauge: { readonly namespace: string; readonly pod: string; readonly kinds: readonly FindingKind[] } | undefined;
}

export class PodMemory implements PodMemoryView {
  readonly firstSeenAt: number;
  #awaitingEcho: { resourceVersion: string; at: number } | undefined;
  #writeUncertain = false;
  #sandboxNotFoundReported = false;
  #sandbox: SandboxNetns | undefined;
  #sandboxFoundAt: number | undefined;
  #verified: Verified | undefined;
  #markEventKnown = false;
  #bypassWarned: { inode: number; note: string } | undefined;
  #bypassGauge: { namespace: string; pod: string; kinds: FindingKind[] } | undefined;

  constructor(now: number) {
    this.firstSeenAt = now;
  }

  get awaitingEcho() {
    return this.#awaitingEcho;
  }
  get writeUncertain() {
    return this.#writeUncertain;
  }
  get sandboxNotFoundReported() {
    return this.#sandboxNotFoundReported;
  }
  get sandbox() {
    return this.#sandbox;
  }
  get sandboxFoundAt() {
    return this.#sandboxFoundAt;
  }
  get verified(): Readonly<Verified> | undefined {
    return this.#verified;
  }
  get markEventKnown() {
    return this.#markEventKnown;
  }
  get bypassWarned() {
    return this.#bypassWarned;
  }
  get bypassGauge() {
    return this.#bypassGauge;
  }

  /** A copy of the pod arrived; watch events come in resourceVersion order, so once our write shows up every later copy is newer. */
  echoSeen(resourceVersion: string | undefined): void {
    if (this.#awaitingEcho && resourceVersionAtLeast(resourceVersion, this.#awaitingEcho.resourceVersion)) this.#awaitingEcho = undefined;
  }

  /** A mark write failed without an answer from the API server. */
  writeMayHaveLanded(): void {
    this.#writeUncertain = true;
  }

  /** The pod was read from the API server itself: whatever our last write did, that copy shows it. */
  freshlyRead(): void {
    this.#writeUncertain = false;
  }

  /** No sandbox: the liveness check has nothing left to watch. */
  sandboxMissing(): void {
    this.#sandbox = undefined;
  }

  reportedSandboxNotFound(): void {
    this.#sandboxNotFoundReported = true;
  }

  /**
   * The latency clock starts when this sandbox is found, and runs on through retries of its
   * programming. Nothing verified in another sandbox counts for this one, whatever its inode.
   */
  sandboxFound(sandbox: SandboxNetns, queuedAt: number): void {
    if (!this.#sandbox || !sameSandbox(this.#sandbox, sandbox)) this.#sandboxFoundAt = undefined;
    if (this.#verified && !sameSandbox(this.#verified.sandbox, sandbox)) this.#verified = undefined;
    this.#sandbox = sandbox;
    this.#sandboxFoundAt ??= queuedAt;
  }

  /** The pass is over for this sandbox: stops the latency clock and returns what it read. */
  settled(now: number): number {
    const latencyMs = now - (this.#sandboxFoundAt ?? now);
    this.#sandboxFoundAt = undefined;
    return latencyMs;
  }

  verifiedNow(verified: Verified): void {
    this.#verified = verified;
  }

  /** Returns true the first time only: whoever gets true makes sure the mark's Event exists. */
  claimMarkEvent(): boolean {
    if (this.#markEventKnown) return false;
    this.#markEventKnown = true;
    return true;
  }

  /** Our initialized mark was written (with its Event): what it says is verified, and its echo awaited. */
  initializedMarkWritten(resourceVersion: string, verified: Verified): void {
    this.#awaitingEcho = resourceVersion ? { resourceVersion, at: verified.at } : undefined;
    this.#markEventKnown = true;
    this.#verified = verified;
  }

  /** The bypass warning was given for this sandbox: once per sandbox, again only if what it says changes. */
  warnedOfBypass(inode: number, note: string): void {
    this.#bypassWarned = { inode, note };
  }

  /** The bypass gauge now holds these series for the pod. */
  publishedBypass(gauge: { namespace: string; pod: string; kinds: FindingKind[] } | undefined): void {
    this.#bypassGauge = gauge;
  }

  /** An error mark is due: nothing verified counts any more. */
  failed(): void {
    this.#verified = undefined;
  }

  /** Our error mark was written: its echo is awaited. */
  errorMarkWritten(resourceVersion: string, now: number): void {
    if (resourceVersion) this.#awaitingEcho = { resourceVersion, at: now };
  }
}

/** Every pod's memory, by UID. Bounded by the eligible pods on the node. */
export class PodMemories {
  readonly #byUid = new Map<string, PodMemory>();

  get(uid: string): PodMemory | undefined {
    return this.#byUid.get(uid);
  }

  /** The pod's memory, started now if it has none. */
  of(uid: string, now: number): PodMemory {
    let memory = this.#byUid.get(uid);
    if (!memory) {
      memory = new PodMemory(now);
      this.#byUid.set(uid, memory);
    }
    return memory;
  }

  forget(uid: string): void {
    this.#byUid.delete(uid);
  }

  entries(): IterableIterator<[string, PodMemory]> {
    return this.#byUid.entries();
  }
}
