// Credentials that expire mid-run fail the run late, often during cleanup. OIDC role sessions
// last one hour unless asked otherwise, so compare the expiry with the longest this run may
// take and say how to fix it before anything is created.
//
// Where the expiry is: aws-actions/configure-aws-credentials exports only AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, and the SDK reads an expiry only from
// AWS_CREDENTIAL_EXPIRATION, so the credentials say nothing. That action's aws-expiration output,
// passed as credentials-expiration, does; without it, session credentials (a session token) of
// unknown age are taken to expire after the one-hour OIDC default.
import * as core from '@actions/core'
import type { Settings } from '../settings/index.js'
import type { Clients } from './clients.js'
import { Input } from '../settings/inputs.js'

/** Helper launch, volume, snapshot and AMI waits, cleanup: everything but the remote commands. */
export const OVERHEAD_MINUTES = 25
/** A dry run only runs the preflight checks. */
export const DRY_RUN_MINUTES = 5

/** The longest the run may take: each remote command may use timeout-minutes. */
export function runMinutes(settings: Pick<Settings, 'mode' | 'timeoutMinutes' | 'dryRun'>): number {
  if (settings.dryRun) return DRY_RUN_MINUTES
  const commands = settings.mode === 'full' ? 2 : 1
  return commands * settings.timeoutMinutes + OVERHEAD_MINUTES
}

/** role-duration-seconds' default for OIDC in aws-actions/configure-aws-credentials. */
export const ASSUMED_SESSION_MINUTES = 60

export interface CredentialLifetime {
  /** When the credentials expire; undefined when they do not (long-term keys) or are unknown. */
  expiresAt?: Date
  /** Where expiresAt comes from. */
  source?: 'input' | 'credentials' | 'assumed'
  neededMinutes: number
  /** The warning given, if any. */
  warning?: string
}

/** Suggested session length: the run plus a margin, in whole quarter hours, at most 12 hours. */
export const suggestedSeconds = (minutes: number): number =>
  Math.min(43200, Math.ceil((minutes + 10) / 15) * 15 * 60)

export async function checkCredentialLifetime(
  clients: Pick<Clients, 'ec2'>,
  settings: Pick<Settings, 'mode' | 'timeoutMinutes' | 'dryRun' | 'credentialsExpiration'>,
  now: Date = new Date(),
  warn: (message: string) => void = (m) => core.warning(m)
): Promise<CredentialLifetime> {
  const neededMinutes = runMinutes(settings)
  let expiresAt: Date | undefined = settings.credentialsExpiration
  let source: CredentialLifetime['source'] = expiresAt ? 'input' : undefined
  if (!expiresAt) {
    let credentials: { expiration?: Date; sessionToken?: string }
    try {
      credentials = await clients.ec2.config.credentials()
    } catch {
      // No credentials at all: the first AWS call reports that, with its own hint.
      return { neededMinutes }
    }
    if (credentials.expiration) {
      expiresAt = credentials.expiration
      source = 'credentials'
    } else if (credentials.sessionToken) {
      expiresAt = new Date(now.getTime() + ASSUMED_SESSION_MINUTES * 60000)
      source = 'assumed'
    }
  }
  if (!expiresAt) return { neededMinutes }
  const leftMinutes = Math.floor((expiresAt.getTime() - now.getTime()) / 60000)
  if (leftMinutes >= neededMinutes) return { expiresAt, source, neededMinutes }
  const what = settings.dryRun
    ? 'a dry run'
    : `mode ${settings.mode} with ${Input.TimeoutMinutes} ${settings.timeoutMinutes} (${settings.mode === 'full' ? 'two remote commands' : 'one remote command'} plus about ${OVERHEAD_MINUTES} min for the helper, volume, snapshot, AMI and cleanup)`
  const seconds = suggestedSeconds(neededMinutes)
  const when =
    source === 'assumed'
      ? `The AWS credentials are session credentials of unknown age, taken to expire like an OIDC session of the default ${ASSUMED_SESSION_MINUTES} min (at ${expiresAt.toISOString()} at the latest; pass ${Input.CredentialsExpiration}: \${{ steps.<id>.outputs.aws-expiration }} from aws-actions/configure-aws-credentials to give the real time)`
      : `The AWS credentials expire at ${expiresAt.toISOString()}, in ${Math.max(leftMinutes, 0)} min`
  const warning =
    `${when}, but this run may take up to ${neededMinutes} min: ${what}. ` +
    `If they expire mid-run, the run fails and cleanup cannot remove what it created. ` +
    `Set role-duration-seconds: ${seconds} in aws-actions/configure-aws-credentials and make sure the role's MaxSessionDuration allows it ` +
    `(role chaining is limited to 1 hour)${settings.dryRun ? '' : `, or lower ${Input.TimeoutMinutes}`}.`
  warn(warning)
  return { expiresAt, source, neededMinutes, warning }
}
