import { describe, expect, it } from '@jest/globals'
import { type Hint, hintFor, hints } from '../../src/report/hints.js'

// Realistic failure text, as the AMI tools, the AWS CLI and bundle.sh print it. `expect` names
// the hint by a word its fix must contain, so the table checks the mapping, not the wording.
const cases: Array<{ name: string; text: string; fixMentions: RegExp }> = [
  {
    name: 'ruby without its openssl library (ruby 1.8)',
    text: "/usr/lib/ruby/1.8/ec2/amitools/crypto.rb:13:in `require': no such file to load -- openssl (LoadError)",
    fixMentions: /ruby-full/
  },
  {
    name: 'ruby without its openssl library (ruby >= 1.9)',
    text: "/opt/ec2-ami-tools-1.5.7/lib/ec2/amitools/crypto.rb:13:in `require': cannot load such file -- openssl (LoadError)",
    fixMentions: /ruby-full/
  },
  {
    name: 'S3 refuses SigV4, the SigV2 fallback is not implemented',
    text: [
      'Uploading bundled image parts to the S3 bucket my-bundles ...',
      'Signature version 4 authentication failed, trying different signature version',
      'ERROR: Error talking to S3: Server.NotImplemented(501): A header you provided implies functionality that is not implemented'
    ].join('\n'),
    fixMentions: /Object Ownership/
  },
  {
    name: 'S3 refuses SigV4, the SigV2 fallback is refused (newer regions)',
    text: 'ERROR: Error talking to S3: Server.InvalidRequest(400): The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.',
    fixMentions: /region/
  },
  {
    name: 'AMI tools on Ruby >= 3.2 (File.exists? removed)',
    text: "/opt/ec2-ami-tools-1.5.7/lib/ec2/amitools/bundlevol.rb:93:in `validate_params': undefined method `exists?' for File:Class (NoMethodError)",
    fixMentions: /File\.exist\?/
  },
  {
    name: 'AMI tools on Ruby >= 3.4 (File.exists? removed, new message)',
    text: "bundlevol.rb:93:in 'validate_params': undefined method 'exists?' for class File (NoMethodError)",
    fixMentions: /1\.5\.19/
  },
  {
    name: 'bucket with ACLs disabled',
    text: 'ERROR: Error talking to S3: Server.AccessControlListNotSupported(400): The bucket does not allow ACLs',
    fixMentions: /BucketOwnerPreferred/
  },
  {
    name: 'outdated CA certificates',
    text: 'ERROR: Error talking to S3: Curl.Error(60): SSL certificate problem: self signed certificate in certificate chain',
    fixMentions: /ca-certificates/
  },
  {
    name: 'GRUB legacy stages missing',
    text: "ERROR: Couldn't find grub stages under /mnt/img-mnt",
    fixMentions: /GRUB legacy|grub 0\.9/i
  },
  {
    name: 'grub shell missing inside the volume',
    text: "ERROR: Required utility 'grub' not found in PATH - is it installed?",
    fixMentions: /GRUB legacy|grub 0\.9/i
  },
  {
    name: 'partitioning tools missing',
    text: "ERROR: Required utility 'kpartx' not found in PATH - is it installed?",
    fixMentions: /kpartx/
  },
  {
    name: 'AMI tools too old for --region',
    text: "invalid option: --region\nTry 'ec2-upload-bundle --help'",
    fixMentions: /1\.5/
  },
  {
    name: 'credentials expired during a long run',
    text: 'An error occurred (RequestExpired) when calling the DescribeImages operation: Request has expired.',
    fixMentions: /role-duration-seconds/
  },
  {
    name: 'session token expired',
    text: 'ExpiredToken: The security token included in the request is expired',
    fixMentions: /role-duration-seconds/
  },
  {
    name: 'bucket owned by somebody else (Packer: upload exit 3)',
    text: '::fail ec2-upload-bundle failed (exit 3): ERROR: Could not create or access bucket my-bundles',
    fixMentions: /another account|somebody else/
  },
  {
    name: 'bucket in another region than --region',
    text: 'ERROR: Bucket "my-bundles" already exists in "eu-west-1" and "us-east-1" was specified.',
    fixMentions: /region/
  },
  {
    name: 'instance profile may not write to the bucket',
    text: 'ERROR: Error talking to S3: Server.AccessDenied(403): Access Denied',
    fixMentions: /s3:PutObjectAcl/
  },
  {
    name: 'instance profile may not read the key parameters',
    text: 'An error occurred (AccessDeniedException) when calling the GetParameter operation: User: arn:aws:sts::123456789012:assumed-role/bundler/i-0abc is not authorized to perform: ssm:GetParameter on resource: arn:aws:ssm:us-east-1:123456789012:parameter/i2e/cert',
    fixMentions: /ssm:GetParameter/
  },
  {
    name: 'no instance profile: the tool finds no credentials',
    text: 'ERROR: missing mandatory parameter: --access-key',
    fixMentions: /instance profile/
  },
  {
    name: 'tool metadata lookup refused (IMDSv1 disabled)',
    text: 'ERROR: Error accessing instance data. If you are not bundling on an EC2 instance use --no-inherit.',
    fixMentions: /IMDSv1|--no-inherit/
  },
  {
    name: 'tool metadata warning only',
    text: 'Unable to read instance meta-data for kernel-id',
    fixMentions: /kernel/
  },
  {
    name: 'destination disk full',
    text: 'rsync: write failed on "/mnt/img-mnt/var/lib/big.db": No space left on device (28)',
    fixMentions: /destination/
  }
]

describe('hintFor', () => {
  it.each(cases)('$name', ({ text, fixMentions }) => {
    const hint = hintFor(text)
    expect(hint).toBeDefined()
    expect(hint?.fix).toMatch(fixMentions)
  })

  it('prefers the real error over a harmless metadata warning printed before it', () => {
    const text = [
      'Unable to read instance meta-data for ramdisk-id',
      'Unable to read instance meta-data for product-codes',
      'ec2-bundle-vol complete.',
      'ERROR: Error talking to S3: Curl.Error(60): SSL certificate problem: unable to get local issuer certificate'
    ].join('\n')
    expect(hintFor(text)?.fix).toMatch(/ca-certificates/)
  })

  it('returns undefined for text it does not know', () => {
    expect(hintFor('InvalidAMIID.NotFound: The image id [ami-123] does not exist')).toBeUndefined()
    expect(hintFor('')).toBeUndefined()
  })
})

describe('the hint table', () => {
  it('has one-line problems and fixes', () => {
    for (const hint of hints as readonly Hint[]) {
      expect(hint.problem).not.toMatch(/\n/)
      expect(hint.fix).not.toMatch(/\n/)
      expect(hint.fix.length).toBeGreaterThan(20)
    }
  })

  it('has patterns without the global flag (test() must not keep state between calls)', () => {
    for (const hint of hints) expect(hint.pattern.global || hint.pattern.sticky).toBe(false)
  })
})
