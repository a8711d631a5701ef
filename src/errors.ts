// The small error pieces every folder uses: the cancellation error, a message from anything
// thrown, and the AWS error code of an SDK error. They stand alone so that aws/ (which waits and
// can be cancelled) needs nothing from pipeline/.

/** Thrown when the job is cancelled (the entry point aborts the run's signal on SIGINT/SIGTERM). */
export class CancelledError extends Error {
  constructor(reason = 'the job was cancelled') {
    super(reason)
    this.name = 'CancelledError'
  }
}

export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message
  return String(err)
}

/** The AWS error code of an SDK error (its Code, code or name), or undefined for a plain Error. */
export function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined
  const e = err as { name?: unknown; Code?: unknown; code?: unknown }
  for (const v of [e.Code, e.code, e.name]) if (typeof v === 'string' && v !== 'Error') return v
  return undefined
}
