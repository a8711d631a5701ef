// EC2 DryRun as a permission probe: DryRunOperation means "you may", UnauthorizedOperation
// means "you may not". Anything else says nothing about permission and is reported as unproven.
import { errorCode } from '../errors.js'

export type Proof = { proven: true } | { proven: false; code: string }

export class PermissionError extends Error {
  constructor(readonly actions: string) {
    super(
      `The action's AWS credentials are not allowed to call ${actions} (EC2 DryRun answered UnauthorizedOperation); allow it in the IAM policy of the role the workflow assumes`
    )
    this.name = 'PermissionError'
  }
}

/** Runs one DryRun call; `actions` names the IAM actions it needs, for the error. */
export async function provePermission(actions: string, call: () => Promise<unknown>): Promise<Proof> {
  try {
    await call()
    return { proven: true }
  } catch (err) {
    const code = errorCode(err) ?? 'error'
    if (code === 'DryRunOperation') return { proven: true }
    if (code === 'UnauthorizedOperation' || code === 'AccessDenied') throw new PermissionError(actions)
    return { proven: false, code }
  }
}
