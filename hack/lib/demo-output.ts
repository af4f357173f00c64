// How both demos print: step headings, indented detail, and checks that stop the demo when they fail.
import type { IptablesMode } from '../../controller/src/redirect/index.ts';
import { isLocalClusterRunning, stopLocalCluster } from './local-cluster.ts';
import { natRules } from './redirect-probe.ts';

const bold = (text: string) => (process.stdout.isTTY ? `\x1b[1m${text}\x1b[0m` : text);

/** Prints a step heading ("== title", bold on a terminal). */
export const step = (title: string) => console.log(`\n${bold(`== ${title}`)}`);

/** Indents every line of TEXT by three spaces, under its step. */
export const indent = (text: string) => text.trimEnd().replace(/^/gm, '   ');

/** Prints "ok: WHAT", or throws "demo check failed: WHAT" when not OK. */
export function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`demo check failed: ${what}`);
  console.log(`   ok: ${what}`);
}

/** Prints the nat table in NETNS_PATH as the MODE backend saves it: IPv4 whole, IPv6 only its ISTIO_* lines (the same layout). */
export async function printNatRules(netnsPath: string, mode: IptablesMode): Promise<void> {
  const [v4, v6] = await Promise.all([natRules(netnsPath, `iptables-${mode}-save`), natRules(netnsPath, `ip6tables-${mode}-save`)]);
  console.log(`   iptables-${mode}-save -t nat:`);
  console.log(
    indent(
      v4
        .split('\n')
        .filter((line) => !line.startsWith('#'))
        .join('\n'),
    ),
  );
  console.log(`   ip6tables-${mode}-save -t nat (ISTIO_* lines; same layout with ::1/128 and ::6/128):`);
  console.log(
    indent(
      v6
        .split('\n')
        .filter((line) => line.includes('ISTIO'))
        .join('\n'),
    ),
  );
}

/**
 * The end of both demos: stops the local cluster unless it ran before the demo or KEEP asks to
 * keep it (WHAT names it in the messages), then prints the verdict with the time since STARTED and
 * exits, 1 when the demo or the stop failed. It says only what is true: a cluster that never
 * came up is neither "kept" nor "stopped".
 */
export async function finishDemo(options: { exitCode: number; started: number; keep: boolean; what: string }): Promise<never> {
  let { exitCode } = options;
  const running = await isLocalClusterRunning();
  if (!running) {
    // `up` removes what it started when it fails; anything half-started goes too.
    await stopLocalCluster().catch(() => undefined);
    console.log(`   no local cluster is running (none was left by this demo)`);
  } else if (options.keep) {
    console.log(`   ${options.what} keeps running; stop it with: bash hack/local-cluster.sh down`);
  } else {
    await stopLocalCluster().then(
      () => console.log(`   ${options.what} this demo started is stopped (npm run demo -- --keep-cluster keeps it)`),
      (error: unknown) => {
        console.error(`   stopping ${options.what} failed: ${String(error)}`);
        exitCode = 1;
      },
    );
  }
  console.log(`\n${exitCode === 0 ? 'demo passed' : 'demo FAILED'} in ${((performance.now() - options.started) / 1000).toFixed(1)} s`);
  process.exit(exitCode);
}
