// How both demos print: step headings, indented detail, and checks that stop the demo when they fail.

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
