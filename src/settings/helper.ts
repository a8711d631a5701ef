// The helper instance that converts (convert-on: helper): a running one (helper-instance-id) or
// one to launch (helper-subnet-id, helper-instance-profile and the other helper-* inputs).
import { AMI_ID, type Form, INSTANCE_ID, INSTANCE_TYPE, SECURITY_GROUP_IDS, SUBNET_ID } from './forms.js'
import { Input } from './inputs.js'
import type { InputParser } from './parser.js'
import type { HelperSettings } from './types.js'

const PROFILE: Form = {
  pattern: /^(?:arn:aws[a-z-]*:iam::\d{12}:instance-profile\/[\w+=,.@/-]+|[\w+=,.@-]{1,128})$/,
  accepted: 'an instance profile name or arn:aws:iam::<account>:instance-profile/<name>'
}

/** needed: whether this run converts on a helper (not mode bundle, not convert-on: runner). */
export function readHelper(p: InputParser, needed: boolean): HelperSettings {
  const instanceId = p.optional(Input.HelperInstanceId, INSTANCE_ID)
  const amiId = p.optional(Input.HelperAmiId, AMI_ID)
  const instanceType =
    p.optional(Input.HelperInstanceType, {
      pattern: INSTANCE_TYPE,
      accepted: 'an instance type such as t3.small'
    }) ?? 't3.small'
  const subnetId = p.optional(Input.HelperSubnetId, SUBNET_ID)
  const securityGroupIds = p.list(Input.HelperSecurityGroupIds, SECURITY_GROUP_IDS)
  const instanceProfile = p.optional(Input.HelperInstanceProfile, PROFILE)
  const launch =
    needed && instanceId === undefined && subnetId !== undefined && instanceProfile !== undefined
      ? { amiId, instanceType, subnetId, securityGroupIds, instanceProfile }
      : undefined
  return { instanceId, launch }
}
