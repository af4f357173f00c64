// Effects: programming, verifying and removing the rules inside a pod's netns.
// Per family, a new pod costs one nsenter running iptables-restore --noflush and iptables-save
// (to verify), plus `ip -6 addr add ::6/128 dev lo` for IPv6; an existing ruleset costs one save
// more when it already matches, else save, restore, save. A check reads every family (and the
// netns record) through one nsenter.
import { stat } from 'node:fs/promises';
import { runInNetns, runSteps, type Netns, type Step, type StepsResult } from './exec.ts';
import { BackendMixError, NetnsMismatch, RedirectError, XtablesLockTimeout } from './errors.ts';
import { parseRecord, READ_RECORD_ARGV, writeNetnsRecord } from './netns-record.ts';
import { ADD_PASSTHROUGH_V6, knownLoopbackV6, passthroughAddressAdded, PASSTHROUGH_V6, readLoopbackV6 } from './loopback.ts';
import { detectIptablesMode, iptablesBinary, type IptablesMode } from './mode.ts';
import { renderPlan, rulesHash } from './render.ts';
import { freshTransaction, isEmptyState, ownedState, removeTransaction, replaceTransaction, restoreFailure, stateDiff, type OwnedState } from './ruleset.ts';
import { FAMILIES, type Family, type RedirectPlan } from './types.ts';

export interface EngineOptions {
  mode?: IptablesMode;
  /**
   * How long iptables-restore waits for the xtables lock (legacy; nft takes none) before
   * giving up with XtablesLockTimeout. Default: wait as long as it takes.
   */
  lockWaitSeconds?: number;
}

export interface ApplyOptions extends EngineOptions {
  /**
   * Rewrite our chains even when they already equal the plan (a manual re-init): still one
   * atomic transaction per family, so the pod's traffic is never unredirected in between.
   */
  force?: boolean;
}

/** iptables-nft-save prints this when the netns also has legacy tables. */
const LEGACY_TABLES_WARNING = 'iptables-legacy tables present';

interface Saved {
  state: OwnedState;
  otherBackendPresent: boolean;
}

async function save(netns: Netns, mode: IptablesMode, family: Family): Promise<Saved> {
  const binary = iptablesBinary(mode, family, 'save');
  // Every table in one process: ours are nat and (with DNS capture) raw.
  const result = await runInNetns(netns, [binary]);
  if (result.code !== 0) {
    throw new RedirectError(netns.path, `${binary} failed (exit ${result.code}): ${result.stderr.trim()}`);
  }
  return parseSaved(result.stdout, result.stderr);
}

/** What iptables prints when it stopped waiting for the xtables lock (exit 4). */
const LOCK_BUSY = /holding the xtables lock/;

function restoreArgv(mode: IptablesMode, family: Family, lockWaitSeconds?: number): string[] {
  return [iptablesBinary(mode, family, 'restore'), '--noflush', lockWaitSeconds === undefined ? '--wait' : `--wait=${lockWaitSeconds}`];
}

/** The lock was the problem: never a refused transaction, so no fallback may follow. */
function lockTimeout(netns: Netns, mode: IptablesMode, family: Family, stderr: string, lockWaitSeconds?: number): XtablesLockTimeout {
  const binary = iptablesBinary(mode, family, 'restore');
  return new XtablesLockTimeout(
    netns.path,
    lockWaitSeconds ?? 0,
    `${binary}: the xtables lock stayed held by another program for ${lockWaitSeconds} s: ${stderr.trim()}`,
  );
}

async function restore(netns: Netns, mode: IptablesMode, family: Family, transaction: string, lockWaitSeconds?: number): Promise<void> {
  const argv = restoreArgv(mode, family, lockWaitSeconds);
  const result = await runInNetns(netns, argv, transaction);
  if (result.code === 4 && LOCK_BUSY.test(result.stderr)) throw lockTimeout(netns, mode, family, result.stderr, lockWaitSeconds);
  if (result.code !== 0) throw new RedirectError(netns.path, restoreFailure(argv[0]!, transaction, result.code, result.stderr));
}

/**
 * Refuses to program a netns whose other iptables backend already holds rules of ours
 * (e.g. programmed under another mode): two backends in one netns make both unreliable.
 */
async function assertNotInOtherBackend(netns: Netns, mode: IptablesMode, family: Family): Promise<void> {
  const other: IptablesMode = mode === 'nft' ? 'legacy' : 'nft';
  const result = await runInNetns(netns, [iptablesBinary(other, family, 'save')]);
  if (result.code === 0 && !isEmptyState(ownedState(result.stdout))) {
    throw new BackendMixError(
      netns.path,
      `${family} redirect rules of this project exist in iptables-${other}; refusing to also program iptables-${mode} (remove them with --iptables-mode ${other} first)`,
    );
  }
}

/** '' when our part of `current` equals `desired`, else a readable diff naming the family. */
function familyDrift(family: Family, desired: OwnedState, current: OwnedState): string {
  const diff = stateDiff(desired, current);
  if (diff === '') return '';
  if (isEmptyState(current)) return `--- ${family}: none of this project's chains or jumps are present`;
  return `--- ${family} (- wanted, + found)\n${diff}`;
}

/**
 * A bare path's inode is taken first (right for a bound /run/netns path): every later entry
 * must find that same netns. A process's /proc/PID/ns/net should come with the inode seen
 * when the process was found, since the PID may be another process's by now.
 */
async function resolve(target: string | Netns): Promise<Netns> {
  if (typeof target !== 'string') return target;
  try {
    return { path: target, inode: (await stat(target)).ino };
  } catch (error) {
    throw new RedirectError(target, `cannot open the network namespace: ${(error as Error).message}`);
  }
}

/**
 * Refuses the netns this process runs in (the node's own, for the hostNetwork agent): a
 * hostNetwork pod's "sandbox" is the node, and redirecting the node's traffic would break it.
 * Every entry checks the expected inode, so checking that inode is enough.
 */
async function assertNotOwnNetns(netns: Netns): Promise<void> {
  if (netns.inode === (await stat('/proc/self/ns/net')).ino) {
    throw new RedirectError(netns.path, "is this process's own network namespace (the node's, for a hostNetwork pod); refusing to program it");
  }
}

interface FamilyOutcome {
  family: Family;
  /** Our rules of this family were (re)programmed. */
  changed: boolean;
  /** ::6/128 was added to lo on the way. */
  addedAddress: boolean;
  /** The ruleset read after changing it (or before, when nothing had to change). */
  saved: Saved;
  /** familyDrift of that read against the payload: '' when they match. */
  drift: string;
}

function parseSaved(stdout: string, stderr: string): Saved {
  return { state: ownedState(stdout), otherBackendPresent: (stdout + stderr).includes(LEGACY_TABLES_WARNING) };
}

/**
 * A new pod's netns has none of our chains: "-N" creates them and the transaction needs no
 * prior read, so one nsenter runs [`ip -6 addr add ::6/128 dev lo`,] the restore and the
 * read-back. If any of our chains exists, the restore fails as a whole (nothing changes) and
 * we read, compare and replace, each its own process.
 */
async function applyFamily(
  netns: Netns,
  mode: IptablesMode,
  family: Family,
  payload: string,
  opts: { force: boolean; lockWaitSeconds?: number; addAddress: boolean },
): Promise<FamilyOutcome> {
  const desired = ownedState(payload);
  const saveBinary = iptablesBinary(mode, family, 'save');
  const steps: Step[] = [
    ...(opts.addAddress ? [{ name: 'address', argv: ADD_PASSTHROUGH_V6, optional: true }] : []),
    { name: 'restore', argv: restoreArgv(mode, family, opts.lockWaitSeconds) },
    { name: 'save', argv: [saveBinary] },
  ];
  const run = await runSteps(netns, steps, freshTransaction(payload));
  if (run.failure !== undefined) throw new RedirectError(netns.path, run.failure);
  const addedAddress = opts.addAddress && (await passthroughAddressAdded(netns, run.succeeded.has('address'), run.stderr));
  if (run.succeeded.has('restore')) {
    if (!run.succeeded.has('save')) throw new RedirectError(netns.path, `${saveBinary} failed: ${run.stderr.trim()}`);
    const saved = parseSaved(run.stdout.get('save') ?? '', run.stderr);
    return { family, changed: true, addedAddress, saved, drift: familyDrift(family, desired, saved.state) };
  }
  if (LOCK_BUSY.test(run.stderr)) throw lockTimeout(netns, mode, family, run.stderr, opts.lockWaitSeconds);
  const current = await save(netns, mode, family);
  if (!opts.force && stateDiff(desired, current.state) === '') return { family, changed: false, addedAddress, saved: current, drift: '' };
  if (current.otherBackendPresent) await assertNotInOtherBackend(netns, mode, family);
  await restore(netns, mode, family, replaceTransaction(payload, current.state), opts.lockWaitSeconds);
  const saved = await save(netns, mode, family);
  return { family, changed: true, addedAddress, saved, drift: familyDrift(family, desired, saved.state) };
}

/**
 * Makes the netns's rules match the plan: a no-op when they already do (changed: false),
 * else one atomic restore per differing family, and our rules removed from families the plan
 * leaves out; then reads them back and throws if they differ.
 */
export async function applyRedirect(target: string | Netns, plan: RedirectPlan, opts: ApplyOptions = {}): Promise<{ hash: string; changed: boolean }> {
  const netns = await resolve(target);
  await assertNotOwnNetns(netns);
  const mode = opts.mode ?? (await detectIptablesMode()).mode;
  const rendered = renderPlan(plan);
  const hash = rulesHash(rendered);
  // IPv6 inbound passthrough needs ::6 on lo; a process's netns shows its addresses in /proc without a process.
  const addAddress = plan.families.includes('ipv6') && (await knownLoopbackV6(netns)) === 'absent';
  const [outcomes, guard, dropped] = await Promise.all([
    Promise.allSettled(
      plan.families.map((family) =>
        applyFamily(netns, mode, family, rendered[family]!, {
          force: opts.force === true,
          lockWaitSeconds: opts.lockWaitSeconds,
          addAddress: addAddress && family === 'ipv6',
        }),
      ),
    ),
    // iptables-legacy-save says nothing about nft rules, so look at nft alongside (nft's save warns about legacy).
    Promise.allSettled(mode === 'legacy' ? plan.families.map((family) => assertNotInOtherBackend(netns, mode, family)) : []),
    // A family the node no longer redirects (e.g. dual-stack -> IPv4 only) must not keep our old rules.
    Promise.allSettled(droppedFamilies(plan).map((family) => removeFamily(netns, mode, family, { unreadableIsEmpty: true }))),
  ]);
  const changed = outcomes.flatMap((outcome) => (outcome.status === 'fulfilled' && outcome.value.changed ? [outcome.value] : []));
  // nft's save (already done) warns when legacy tables exist: only then look at them.
  const lateGuard = await Promise.allSettled(
    changed.filter(({ saved }) => saved.otherBackendPresent).map(({ family }) => assertNotInOtherBackend(netns, mode, family)),
  );
  const errors = [...outcomes, ...guard, ...dropped, ...lateGuard].flatMap((outcome) => (outcome.status === 'rejected' ? [outcome.reason as unknown] : []));
  if (errors.some((error) => error instanceof BackendMixError)) {
    // Never leave our rules in two backends: undo what this call programmed, then report.
    await Promise.allSettled(changed.map(({ family }) => removeFamily(netns, mode, family)));
  }
  if (errors.length > 0) throw errors.find((error) => error instanceof BackendMixError) ?? errors[0];
  const drift = changed.map((outcome) => outcome.drift).filter((diff) => diff !== '');
  if (drift.length > 0) {
    throw new RedirectError(netns.path, `rules differ from the plan right after applying (pod ${plan.pod}):\n${drift.join('\n')}`);
  }
  const removedDropped = dropped.some((outcome) => outcome.status === 'fulfilled' && outcome.value);
  const addedAddress = outcomes.some((outcome) => outcome.status === 'fulfilled' && outcome.value.addedAddress);
  return { hash, changed: changed.length > 0 || removedDropped || addedAddress };
}

export interface Verification {
  ok: boolean;
  diff: string;
}

/** Reads the netns's rules back; ok when our part equals the plan, else a readable diff. */
export async function verifyRedirect(target: string | Netns, plan: RedirectPlan, opts: EngineOptions = {}): Promise<Verification> {
  return (await readBack(await resolve(target), plan, opts, [])).verification;
}

/**
 * verifyRedirect, and the netns record (lo's alias) read in the same process start: the
 * agent's check of a marked pod. Process starts dominate it: Node forks itself for each, on
 * its main thread, in 2-3 ms at the agent's size.
 */
export async function verifyRedirectWithRecord(netns: Netns, plan: RedirectPlan, opts: EngineOptions = {}): Promise<Verification & { record: string }> {
  const { verification, run } = await readBack(netns, plan, opts, [{ name: 'record', argv: READ_RECORD_ARGV }]);
  return { ...verification, record: parseRecord(netns, run.stdout.get('record') ?? '') };
}

/** Every family's rules read back in one nsenter, then `more` steps; the verification of the plan. */
async function readBack(netns: Netns, plan: RedirectPlan, opts: EngineOptions, more: Step[]): Promise<{ verification: Verification; run: StepsResult }> {
  const mode = opts.mode ?? (await detectIptablesMode()).mode;
  const rendered = renderPlan(plan);
  const dropped = droppedFamilies(plan);
  const steps: Step[] = [
    ...plan.families.map((family) => ({ name: family, argv: [iptablesBinary(mode, family, 'save')] })),
    // A family the host cannot list (IPv6 disabled) holds none of our rules.
    ...dropped.map((family) => ({ name: `dropped-${family}`, argv: [iptablesBinary(mode, family, 'save')], optional: true })),
    ...more,
  ];
  const [run, address] = await Promise.all([runSteps(netns, steps), plan.families.includes('ipv6') ? readLoopbackV6(netns) : undefined]);
  if (run.failure !== undefined) throw new RedirectError(netns.path, run.failure);
  const failed = steps.find((step) => !step.optional && !run.succeeded.has(step.name));
  if (failed) throw new RedirectError(netns.path, `${failed.argv.join(' ')} failed: ${run.stderr.trim()}`);
  const diffs = plan.families
    .map((family) => familyDrift(family, ownedState(rendered[family]!), ownedState(run.stdout.get(family) ?? '')))
    .filter((diff) => diff !== '');
  for (const family of dropped) {
    const state = ownedState(run.succeeded.has(`dropped-${family}`) ? (run.stdout.get(`dropped-${family}`) ?? '') : '');
    if (!isEmptyState(state)) diffs.push(`--- ${family}: not in the plan, yet this project's chains or jumps are present`);
  }
  if (address === 'absent') diffs.push(`--- ipv6: address ${PASSTHROUGH_V6} is missing from lo (the proxy binds inbound passthrough connections to it)`);
  return { verification: { ok: diffs.length === 0, diff: diffs.join('\n') }, run };
}

function droppedFamilies(plan: RedirectPlan): Family[] {
  return FAMILIES.filter((family) => !plan.families.includes(family));
}

/** Our part of a family the plan leaves out; a family the host cannot list (IPv6 disabled) has none. */
async function readOwnedOrEmpty(netns: Netns, mode: IptablesMode, family: Family): Promise<OwnedState> {
  try {
    return (await save(netns, mode, family)).state;
  } catch (error) {
    if (error instanceof NetnsMismatch) throw error;
    return ownedState('');
  }
}

/**
 * Clears the netns record first (a waiter must never pass on rules being removed), then deletes
 * our jumps and chains in both families (one transaction each); others' rules stay.
 * ::6 stays on lo: it is harmless (reachable only inside the pod), a proxy that is still
 * running needs it, and nothing tells ours from one Istio's own tooling added.
 */
export async function removeRedirect(target: string | Netns, opts: EngineOptions = {}): Promise<void> {
  const netns = await resolve(target);
  await assertNotOwnNetns(netns);
  const mode = opts.mode ?? (await detectIptablesMode()).mode;
  await writeNetnsRecord(netns, '');
  await Promise.all(FAMILIES.map((family) => removeFamily(netns, mode, family)));
}

async function removeFamily(netns: Netns, mode: IptablesMode, family: Family, opts: { unreadableIsEmpty?: boolean } = {}): Promise<boolean> {
  const state = opts.unreadableIsEmpty ? await readOwnedOrEmpty(netns, mode, family) : (await save(netns, mode, family)).state;
  const transaction = removeTransaction(state);
  if (transaction === undefined) return false;
  await restore(netns, mode, family, transaction);
  return true;
}
