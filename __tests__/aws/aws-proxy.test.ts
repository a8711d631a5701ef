// tools/aws-proxy.mjs, the proxy of the end-to-end run: it decodes what the real SDK clients put
// on the wire (EC2 query, SSM JSON, S3 REST), refuses a request that breaks a contract rule with the
// rule's message in the service's own error format, and makes new resources lag as AWS does.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import { DescribeImagesCommand, EC2Client, RegisterImageCommand } from '@aws-sdk/client-ec2'
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { SendCommandCommand, SSMClient } from '@aws-sdk/client-ssm'
import { RULES } from '../../tools/aws-contract.mjs'
import { decodeEc2Query, decodeS3, startProxy } from '../../tools/aws-proxy.mjs'

const AMI = 'ami-0123456789abcdef0'
let upstream: Server
let proxy: Server
const seen: string[] = []

const url = (s: Server) => `http://127.0.0.1:${(s.address() as AddressInfo).port}`
const options = () => ({
  endpoint: url(proxy),
  region: 'us-east-1',
  credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  maxAttempts: 1
})

beforeAll(async () => {
  // A stand-in for moto: answers RegisterImage, DescribeImages (available) and anything else with 200.
  upstream = createServer(async (req, res) => {
    let body = ''
    for await (const c of req) body += c
    const action = new URLSearchParams(body).get('Action') ?? `${req.method} ${req.url}`
    seen.push(action)
    res.writeHead(200, { 'content-type': 'text/xml' })
    if (action === 'RegisterImage')
      return res.end(
        `<RegisterImageResponse><requestId>r</requestId><imageId>${AMI}</imageId></RegisterImageResponse>`
      )
    if (action === 'DescribeImages')
      return res.end(
        `<DescribeImagesResponse><requestId>r</requestId><imagesSet><item><imageId>${AMI}</imageId><imageState>available</imageState></item></imagesSet></DescribeImagesResponse>`
      )
    res.end('')
  })
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
  proxy = await startProxy({ motoUrl: url(upstream), lag: 1 })
})

afterAll(async () => {
  await new Promise((resolve) => proxy.close(resolve))
  await new Promise((resolve) => upstream.close(resolve))
})

const rule = (id: string) => {
  const r = RULES.find((x) => x.id === id)
  if (!r) throw new Error(`no rule ${id}`)
  return r
}

describe('aws-proxy', () => {
  it('refuses RegisterImage with a snapshot tag specification, as EC2 would, with the rule’s message', async () => {
    const ec2 = new EC2Client(options())
    const err = await ec2
      .send(new RegisterImageCommand(rule('RegisterImage.tag-resource-type').fail as never))
      .catch((e) => e)
    expect(err.name).toBe('InvalidParameterValue')
    expect(err.message).toContain(
      "AWS contract rule RegisterImage.tag-resource-type broken: TagSpecifications has ResourceType 'snapshot'"
    )
    expect(seen).not.toContain('RegisterImage')
    const report = (await (await fetch(`${url(proxy)}/_proxy/report`)).json()) as {
      violations: { rule: string }[]
    }
    expect(report.violations.map((v) => v.rule)).toEqual(['RegisterImage.tag-resource-type'])
    ec2.destroy()
  })

  it('passes a valid RegisterImage on; the new AMI is NotFound, then pending, then what moto says', async () => {
    const ec2 = new EC2Client(options())
    const out = await ec2.send(
      new RegisterImageCommand(rule('RegisterImage.tag-resource-type').pass as never)
    )
    expect(out.ImageId).toBe(AMI)
    const describe = () => ec2.send(new DescribeImagesCommand({ ImageIds: [AMI] }))
    expect((await describe().catch((e) => e)).name).toBe('InvalidAMIID.NotFound')
    expect((await describe()).Images?.[0]?.State).toBe('pending')
    expect((await describe()).Images?.[0]?.State).toBe('available')
    ec2.destroy()
  })

  it('refuses an SSM SendCommand whose comment is too long, as SSM would', async () => {
    const ssm = new SSMClient(options())
    const err = await ssm
      .send(new SendCommandCommand(rule('SendCommand.comment').fail as never))
      .catch((e) => e)
    expect(err.name).toBe('ValidationException')
    expect(err.message).toContain('AWS contract rule SendCommand.comment broken')
    ssm.destroy()
  })

  it('reads S3 REST requests (path style) and refuses a key longer than 1,024 bytes', async () => {
    const s3 = new S3Client({ ...options(), forcePathStyle: true })
    const err = await s3
      .send(new HeadObjectCommand({ Bucket: 'my-bundles', Key: 'k'.repeat(1025) }))
      .catch((e) => e)
    expect(err.$metadata?.httpStatusCode).toBe(400)
    await expect(
      s3.send(new HeadObjectCommand({ Bucket: 'my-bundles', Key: 'builds/a.manifest.xml' }))
    ).resolves.toBeDefined()
    expect(seen).toContain('HEAD /my-bundles/builds/a.manifest.xml')
    s3.destroy()
  })

  it('decodes EC2 query lists into the SDK’s plural member names', () => {
    const { operation, input } = decodeEc2Query(
      'Action=RegisterImage&Version=2016-11-15&Name=web&TagSpecification.1.ResourceType=image&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=web&BlockDeviceMapping.1.DeviceName=%2Fdev%2Fsda1&BlockDeviceMapping.1.Ebs.SnapshotId=snap-1'
    )
    expect(operation).toBe('RegisterImage')
    expect(input).toEqual({
      Name: 'web',
      TagSpecifications: [{ ResourceType: 'image', Tags: [{ Key: 'Name', Value: 'web' }] }],
      BlockDeviceMappings: [{ DeviceName: '/dev/sda1', Ebs: { SnapshotId: 'snap-1' } }]
    })
    expect(decodeEc2Query('Action=CreateTags&Version=1&ResourceId.1=snap-1').input).toEqual({
      Resources: ['snap-1']
    })
    expect(
      decodeS3('POST', '/b?delete', '127.0.0.1:1', '<Delete><Object><Key>a</Key></Object></Delete>')
    ).toEqual({
      operation: 'DeleteObjects',
      input: { Bucket: 'b', Delete: { Objects: [{ Key: 'a' }] } }
    })
  })
})
