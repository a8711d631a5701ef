// How the run goes: where the image is written (convert-on, upload-concurrency), the boot check
// (verify-boot-*), and the run's own options (dry-run, timeout-minutes, max-attempts, log-group,
// credentials-expiration).
import { type Form, INSTANCE_TYPE, SECURITY_GROUP_IDS, SUBNET_ID } from './forms.js'
import { Input } from './inputs.js'
import type { InputParser } from './parser.js'
import type { ConvertOn, Settings, VerifyBoot, VerifyBootFailure } from './types.js'

export type RunOptions = Pick<
  Settings,
  | 'convertOn'
  | 'uploadConcurrency'
  | 'verifyBoot'
  | 'dryRun'
  | 'timeoutMinutes'
  | 'maxAttempts'
  | 'logGroup'
  | 'credentialsExpiration'
>

const INSTANCE_TYPES: Form = {
  pattern: INSTANCE_TYPE,
  accepted: 'instance types such as m3.medium or t3.small, comma or newline separated'
}
const LOG_GROUP: Form = {
  pattern: /^[.\-_/#A-Za-z0-9]{1,512}$/,
  accepted: 'a CloudWatch Logs group name (letters, digits, . - _ / #)'
}

function readVerifyBoot(p: InputParser): VerifyBoot {
  return {
    enabled: p.boolean(Input.VerifyBoot, false),
    instanceTypes: p.list(Input.VerifyBootInstanceTypes, INSTANCE_TYPES, true),
    subnetId: p.optional(Input.VerifyBootSubnetId, SUBNET_ID),
    securityGroupIds: p.list(Input.VerifyBootSecurityGroupIds, SECURITY_GROUP_IDS),
    onFailure:
      p.oneOf<VerifyBootFailure>(Input.VerifyBootFailure, ['deregister', 'keep'], 'deregister') ??
      'deregister'
  }
}

export function readRunOptions(p: InputParser): RunOptions {
  return {
    convertOn: p.oneOf<ConvertOn>(Input.ConvertOn, ['helper', 'runner'], 'helper') ?? 'helper',
    uploadConcurrency: p.integer(Input.UploadConcurrency, 1, 128) ?? 32,
    verifyBoot: readVerifyBoot(p),
    dryRun: p.boolean(Input.DryRun, false),
    timeoutMinutes: p.integer(Input.TimeoutMinutes, 5, 2880) ?? 120,
    maxAttempts: p.integer(Input.MaxAttempts, 1, 20) ?? 8,
    logGroup: p.optional(Input.LogGroup, LOG_GROUP),
    credentialsExpiration: p.timestamp(Input.CredentialsExpiration)
  }
}
