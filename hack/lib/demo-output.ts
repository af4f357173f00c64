// How both demos print: step headings, indented detail, and checks that stop the demo when they fail.
import { stopLocalCluster } from './local-cluster.ts';

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

/**
 * The end of both demos: stops the local cluster unless it ran before the demo or KEEP asks to
 * keep it (WHAT names it in the messages), then prints the verdict with the time since STARTED and
 * exits, 1 when the demo or the stop failed.
 */
export async function finishDemo(options: { exitCode: number; started: number; keep: boolean; what: string }): Promise<never> {
  let { exitCode } = options;
  if (options.keep) {
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
