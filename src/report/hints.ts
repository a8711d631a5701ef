import { Input } from '../settings/inputs.js'
// Known failures of the AMI tools, the AWS CLI and bundle.sh, each with the one-line fix.
// Sources: the seed README's "Issues" list, Packer's amazon-instance builder and its issues
// (#3615, #3179, #1599, #7991, packer-plugin-amazon#426, #246) and ec2-ami-tools 1.5 itself.
// The table is ordered: the first matching entry wins, so specific causes come before the
// generic ones and harmless warnings (which also appear in successful runs) come last.

export interface Hint {
  pattern: RegExp
  problem: string
  fix: string
}

export const hints: readonly Hint[] = [
  {
    pattern: /(no such file to load|cannot load such file) -- openssl/,
    problem: "Ruby on the source instance lacks its openssl library, which the AMI tools' crypto needs.",
    fix: `Install ruby-full (apt-get install -y ruby-full; on yum/dnf systems the ruby openssl package) or set ${Input.InstallPrerequisites}: true.`
  },
  {
    pattern: /AccessControlListNotSupported|bucket does not allow ACLs/,
    problem:
      'The bucket has ACLs disabled (Object Ownership: BucketOwnerEnforced), so the aws-exec-read ACL EC2 needs is refused.',
    fix: 'Enable ACLs on the bucket: aws s3api put-bucket-ownership-controls --bucket BUCKET --ownership-controls "Rules=[{ObjectOwnership=BucketOwnerPreferred}]".'
  },
  {
    pattern:
      /already exists in "[^"]*" and "[^"]*" was specified|PermanentRedirect|must be addressed using the specified endpoint/,
    problem: 'The bucket is in another region than the one the upload was signed for.',
    fix: 'Use a bucket in the same region as the source instance (the action region), or set region to the bucket region.'
  },
  {
    pattern:
      /Signature version 4 authentication failed|NotImplemented\(501\)|authorization mechanism you have provided is not supported/,
    problem:
      "S3 refused the SigV4-signed upload (403) and the tool's SigV2 fallback is not supported: the bucket is in another region, the credentials may not write there, or ACLs are disabled.",
    fix: 'Check that the bucket is in the action region, that the instance profile allows s3:PutObject and s3:PutObjectAcl on it, and that its Object Ownership is not BucketOwnerEnforced (ACLs enabled).'
  },
  {
    pattern: /Curl\.Error\(60\)|SSL certificate problem/,
    problem: 'The instance does not trust the S3 certificate chain (outdated CA bundle).',
    fix: 'Update the CA certificates on the source instance: apt-get install -y --reinstall ca-certificates && update-ca-certificates (yum: yum reinstall -y ca-certificates).'
  },
  {
    pattern: /Couldn't find grub stages|Required utility 'grub' not found/,
    problem:
      'ec2-bundle-vol installs GRUB legacy (grub 0.9x) into hvm images, and it is not installed on the instance.',
    fix: `Install GRUB legacy on the source instance (apt-get install -y grub / yum install -y grub, giving grub --version 0.97) or set ${Input.InstallPrerequisites}: true.`
  },
  {
    pattern: /Required utility '(kpartx|parted|sgdisk|dmsetup|losetup)' not found/,
    problem: 'ec2-bundle-vol needs the partitioning tools to build an hvm disk image.',
    fix: `Install gdisk, kpartx and parted on the source instance (apt-get/yum install -y gdisk kpartx parted) or set ${Input.InstallPrerequisites}: true.`
  },
  {
    pattern: /undefined method [`']exists\?' for (class )?File/,
    problem: 'The AMI tools on the instance call File.exists?, which Ruby 3.2 removed.',
    fix: `Replace File.exists? with File.exist? in the tools' lib/**/*.rb, or remove them and set ${Input.InstallPrerequisites}: true (the pinned 1.5.19 is installed patched).`
  },
  {
    pattern: /invalid option: --region/,
    problem: 'The AMI tools on the instance are older than 1.5 and do not know --region.',
    fix: `Install ec2-ami-tools 1.5.x from Amazon's zip (remove the distribution's old ec2-ami-tools package first) or set ${Input.InstallPrerequisites}: true.`
  },
  {
    pattern: /RequestExpired|ExpiredToken|security token included in the request is expired/,
    problem: 'The AWS credentials expired during the run.',
    fix: 'Raise role-duration-seconds in aws-actions/configure-aws-credentials (OIDC defaults to 1 hour) to cover the whole bundle and convert.'
  },
  {
    pattern:
      /ec2-upload-bundle failed \(exit 3\)|Could not create or access bucket|BucketAlreadyExists|owned by somebody else/,
    problem: 'The bucket name is taken by another account or the bucket is not writable by this one.',
    fix: 'Create the bucket in your own account in the action region (bucket names are global; one owned by another account or somebody else cannot be used) and grant the instance profile write access.'
  },
  {
    pattern: /ssm:GetParameter|kms:Decrypt|ParameterNotFound/,
    problem: "The source instance could not read the key material's SecureString parameters.",
    fix: 'Allow ssm:GetParameter on the parameters and kms:Decrypt on their key for the instance profile, and keep them in the action region.'
  },
  {
    pattern: /mandatory parameter:? --access-key|Unable to locate credentials|InvalidAccessKeyId/,
    problem: 'The tools found no usable AWS credentials on the instance.',
    fix: 'Attach an instance profile to the source instance (with S3 write access to the bucket) so that its credentials can be read from the instance metadata.'
  },
  {
    pattern: /AccessDenied\(403\)|AccessDenied|Access Denied/,
    problem: "S3 denied the upload to the bucket with the instance profile's credentials.",
    fix: 'Allow s3:PutObject, s3:PutObjectAcl, s3:GetBucketLocation and s3:ListBucket on the bucket and prefix for the instance profile, and check the bucket policy.'
  },
  {
    pattern: /No space left on device|not enough free space/,
    problem: 'The bundle destination ran out of space.',
    fix: 'Choose a destination with at least three times the used size of the root filesystem free (the /mnt instance-store disk, or an attached EBS volume).'
  },
  {
    pattern: /Error accessing instance data/,
    problem: 'ec2-bundle-vol reads the instance metadata with IMDSv1, which this instance refuses.',
    fix: 'bundle.sh adds --no-inherit when IMDSv1 is refused; if you run the tool yourself, pass --no-inherit or allow IMDSv1 (http-tokens optional) while bundling.'
  },
  {
    pattern: /Unable to read instance meta-data for/,
    problem:
      'ec2-bundle-vol could not copy kernel, ramdisk or product codes from the instance metadata (a warning, not an error).',
    fix: 'Nothing to do for hvm; for paravirtual the kernel (AKI) is set when the AMI is registered, so check that the source AMI has one.'
  }
]

export function hintFor(text: string): Hint | undefined {
  return hints.find((hint) => hint.pattern.test(text))
}
