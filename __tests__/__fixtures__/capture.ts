// The one way tests read what the action writes to stdout (workflow commands such as ::warning::,
// ::error::, ::group::): captured, not shown, and process.stdout.write restored even on failure.

/** Runs fn with process.stdout.write captured; returns fn's result and the chunks written. */
export async function captureStdout<T>(fn: () => T | Promise<T>): Promise<{ result: T; out: string[] }> {
  const out: string[] = []
  const write = process.stdout.write.bind(process.stdout)
  process.stdout.write = ((chunk: string | Uint8Array) =>
    out.push(String(chunk)) > 0) as typeof process.stdout.write
  try {
    return { result: await fn(), out }
  } finally {
    process.stdout.write = write
  }
}
