// Flag values of the hack/ scripts.

/** A positive integer flag value; otherwise says which flag and exits 2. */
export function positiveInteger(flag: string, text: string | undefined): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) {
    console.error(`--${flag} ${JSON.stringify(text)}: must be a positive integer`);
    process.exit(2);
  }
  return value;
}
