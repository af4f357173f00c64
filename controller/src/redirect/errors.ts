// Typed errors of the redirect engine: callers (agent, CLI) map them to events and exit codes.

/** A pod annotation (or a pod field) has a value the engine refuses; no plan is made. */
export class AnnotationError extends Error {
  override name = 'AnnotationError';
  readonly pod: string;
  readonly annotation: string;
  readonly value: string;

  constructor(pod: string, annotation: string, value: string, reason: string) {
    super(`pod ${pod}: annotation ${annotation}=${JSON.stringify(value)}: ${reason}`);
    this.pod = pod;
    this.annotation = annotation;
    this.value = value;
  }
}

/** The node configuration is invalid (operator error, not a pod's). */
export class NodeConfigError extends Error {
  override name = 'NodeConfigError';
}

/** iptables/nsenter failed inside a netns, or the rules did not verify after applying. */
export class RedirectError extends Error {
  override name = 'RedirectError';
  readonly netns: string;

  constructor(netns: string, message: string) {
    super(`netns ${netns}: ${message}`);
    this.netns = netns;
  }
}

/**
 * The netns at the path is not the one expected: the process behind a /proc/PID/ns/net path
 * exited and its PID was reused (or the path was rebound). Nothing ran in it.
 */
export class NetnsMismatch extends RedirectError {
  override name = 'NetnsMismatch';
  readonly expectedInode: number;
  readonly foundInode: number;

  constructor(netns: string, expectedInode: number, foundInode: number) {
    super(netns, `is net:[${foundInode}], not the expected net:[${expectedInode}] (its process exited and the PID was reused?); nothing ran in it`);
    this.expectedInode = expectedInode;
    this.foundInode = foundInode;
  }
}

/** The netns's other iptables backend already holds our rules; programming this one would mix them. */
export class BackendMixError extends RedirectError {
  override name = 'BackendMixError';
}

/** iptables gave up waiting for the xtables lock another program holds (legacy backend); retrying later can succeed. */
export class XtablesLockTimeout extends RedirectError {
  override name = 'XtablesLockTimeout';
  readonly waitedSeconds: number;

  constructor(netns: string, waitedSeconds: number, message: string) {
    super(netns, message);
    this.waitedSeconds = waitedSeconds;
  }
}
