// The accepted forms of input values: a pattern and the words a problem shows for it. A form used
// by more than one input is written once here.

/** What a value must match, and how a problem describes it ("expected <accepted>"). */
export interface Form {
  pattern: RegExp
  accepted: string
}

/** AWS resource ids: prefix, then 8 or 17 lowercase hex digits. */
export const idPattern = (prefix: string): RegExp => new RegExp(`^${prefix}-(?:[0-9a-f]{8}|[0-9a-f]{17})$`)

const idForm = (prefix: string, what: string): Form => ({
  pattern: idPattern(prefix),
  accepted: `${what} such as ${prefix}-0123456789abcdef0`
})

export const INSTANCE_ID = idForm('i', 'an instance id')
export const AMI_ID = idForm('ami', 'an AMI id')
export const SUBNET_ID = idForm('subnet', 'a subnet id')
export const SECURITY_GROUP_IDS = idForm('sg', 'security group ids')
export const KERNEL_ID = idForm('aki', 'a kernel id')
export const RAMDISK_ID = idForm('ari', 'a ramdisk id')

export const REGION = /^[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$/
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
export const BUCKET =
  /^(?!xn--|sthree-|amzn-s3-demo-)(?!.*(?:-s3alias|--ol-s3|--x-s3|--table-s3)$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/
export const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9-]+$/
