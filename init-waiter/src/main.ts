// init-waiter entry: the first init container of a mesh pod. Wires the waiter (waiter.ts)
// to the real annotations file, self-test, timers, log and process exit.
// Node's standard library only: the bundle is tiny and starts fast in any pod.
import { readFileSync, readlinkSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { netnsInodeFromLink } from '../../controller/src/pod-contract/index.ts';
import { watchAnnotations } from './annotations-watcher.ts';
import { EXIT } from './exit-codes.ts';
import { watchRecord } from './netns-record-watcher.ts';
import { HelpRequested, parseOptions, USAGE, UsageError } from './options.ts';
import type { WaiterOptions } from './options.ts';
import { hasIpv4, podHasIpv6, podInterfaces, podRoutes } from './pod-addresses.ts';
import { runSelfTest } from './self-test.ts';
import { writeTerminationMessage } from './termination-message.ts';
import { Waiter } from './waiter.ts';
import type { Clock } from './waiter.ts';

/** How long one self-test attempt waits for its connections to arrive. */
const SELF_TEST_TIMEOUT_MS = 1_000;

const startedAt = performance.now();
/** Known once the options are parsed; before that only the log has the last words. */
let terminationMessagePath: string | undefined;

function log(message: string): void {
  const elapsed = ((performance.now() - startedAt) / 1000).toFixed(3);
  process.stdout.write(`init-waiter [+${elapsed}s] ${message}\n`);
}

function exit(code: number, message: string): never {
  const cpu = process.cpuUsage();
  log(`${message} (exit ${code}, peak RSS ${peakRss()}, cpu ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms)`);
  if (terminationMessagePath !== undefined) writeTerminationMessage(terminationMessagePath, message);
  process.exit(code);
}

/**
 * VmHWM: the peak resident set, which the container's memory limit must cover; RssAnon: the
 * part that is the waiter's own (the rest is the node binary's file pages, shared and reclaimable).
 */
function peakRss(): string {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const mib = (field: string) => {
      const kib = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1];
      return kib ? `${(Number(kib) / 1024).toFixed(1)} MiB` : 'unknown';
    };
    return `${mib('VmHWM')}, anonymous ${mib('RssAnon')}`;
  } catch {
    return 'unknown';
  }
}

const clock: Clock = {
  after(ms, fn) {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
  every(ms, fn) {
    const timer = setInterval(fn, ms).unref();
    return () => clearInterval(timer);
  },
};

function main(): void {
  let options: WaiterOptions;
  try {
    options = parseOptions(process.argv.slice(2), process.env);
  } catch (error) {
    if (error instanceof HelpRequested) {
      process.stdout.write(`${USAGE}\n`);
      process.exit(EXIT.ready);
    }
    if (error instanceof UsageError) {
      process.stderr.write(`init-waiter: ${error.message}\n${USAGE}\n`);
      process.exit(EXIT.usage);
    }
    throw error;
  }
  terminationMessagePath = options.terminationMessagePath;

  const interfaces = podInterfaces(networkInterfaces());
  const waiter = new Waiter({
    options,
    pod: {
      netns: netnsInodeFromLink(readlinkSync('/proc/self/ns/net')),
      families: [...(hasIpv4(interfaces) ? ['ipv4' as const] : []), ...(podHasIpv6() ? ['ipv6' as const] : [])],
      network: { interfaces, routes: podRoutes() },
      uid: process.getuid?.(),
    },
    annotations: (onSnapshot) => watchAnnotations(options.annotationsFile, onSnapshot),
    netnsRecord: (onRecord) => watchRecord(onRecord),
    selfTest: (targets) => runSelfTest({ proxyPort: options.proxyPort, targets, timeoutMs: SELF_TEST_TIMEOUT_MS }),
    clock,
    log,
    exit,
  });
  // Installed before the first log line, so a SIGTERM after it is always answered with the reason.
  process.on('SIGTERM', () => waiter.terminate());
  waiter.start();
}

try {
  main();
} catch (error) {
  exit(EXIT.internalError, `internal error: ${error instanceof Error ? error.stack : String(error)}`);
}
