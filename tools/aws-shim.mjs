// A tiny `aws` command for scripts run by the SSM stand-in (tools/ssm-standin.mjs), which puts a
// wrapper named `aws` first on their PATH. It talks to the emulator through the SDK's own endpoint
// variables (AWS_ENDPOINT_URL …) and knows only what our instance scripts call:
//   aws s3 cp s3://BUCKET/KEY -|FILE          aws s3 cp FILE|- s3://BUCKET/KEY
//   aws s3 ls s3://BUCKET/[PREFIX]            (the CLI's columns: date time size name, PRE dir/)
//   aws ssm get-parameter --name N [--with-decryption] [--query Parameter.Value --output text]
// Anything else fails loudly (exit 252), so a script that starts using more is noticed in tests.
import { once } from 'node:events'
import { createReadStream, createWriteStream } from 'node:fs'
import { pipeline } from 'node:stream/promises'
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm'

const FLAGS = new Set([
  '--with-decryption',
  '--no-with-decryption',
  '--quiet',
  '--no-progress',
  '--only-show-errors'
])

/** Splits argv into positional words and --options (a flag maps to true). */
function parse(argv) {
  const words = []
  const opts = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (FLAGS.has(a)) opts[a.slice(2)] = true
    else if (a.startsWith('--')) opts[a.slice(2)] = argv[++i]
    else words.push(a)
  }
  return { words, opts }
}

function usage(argv) {
  process.stderr.write(`aws (instance-to-ebs test shim): unsupported command: aws ${argv.join(' ')}\n`)
  process.exit(252)
}

let operation = 'unknown' // for the error message, as the real CLI words it

const s3Url = (url) => {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(url)
  return m && { Bucket: m[1], Key: m[2] }
}

async function s3cp(src, dst, region) {
  const s3 = new S3Client({ region, forcePathStyle: true })
  const from = s3Url(src)
  const to = s3Url(dst)
  if (from && !to) {
    operation = 'GetObject'
    const out = await s3.send(new GetObjectCommand(from))
    if (dst !== '-') await pipeline(out.Body, createWriteStream(dst))
    // Not pipeline(): it would end stdout, which shuts down the socket the calling script shares.
    else
      for await (const chunk of out.Body)
        if (!process.stdout.write(chunk)) await once(process.stdout, 'drain')
  } else if (to && !from) {
    // The SDK needs a known length for a stream, so read stdin or the file whole: fixtures are small.
    const chunks = []
    for await (const c of src === '-' ? process.stdin : createReadStream(src)) chunks.push(c)
    operation = 'PutObject'
    await s3.send(new PutObjectCommand({ ...to, Body: Buffer.concat(chunks) }))
  } else {
    return false
  }
  return true
}

// Like the CLI: one level under the prefix's folder, names relative to it; exit 1 when nothing matched.
async function s3ls(url, region) {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url)
  if (!m) return false
  const [, Bucket, Prefix] = m
  const folder = Prefix.slice(0, Prefix.lastIndexOf('/') + 1)
  const s3 = new S3Client({ region, forcePathStyle: true })
  operation = 'ListObjectsV2'
  let found = 0
  let ContinuationToken
  do {
    const out = await s3.send(new ListObjectsV2Command({ Bucket, Prefix, Delimiter: '/', ContinuationToken }))
    for (const p of out.CommonPrefixes ?? []) {
      process.stdout.write(`${'PRE'.padStart(30)} ${p.Prefix.slice(folder.length)}\n`)
      found++
    }
    for (const o of out.Contents ?? []) {
      const when = o.LastModified.toISOString().replace('T', ' ').slice(0, 19)
      process.stdout.write(`${when} ${String(o.Size).padStart(10)} ${o.Key.slice(folder.length)}\n`)
      found++
    }
    ContinuationToken = out.NextContinuationToken
  } while (ContinuationToken)
  if (!found && Prefix) process.exit(1)
  return true
}

async function getParameter(opts, region) {
  const ssm = new SSMClient({ region })
  operation = 'GetParameter'
  const out = await ssm.send(
    new GetParameterCommand({ Name: opts.name, WithDecryption: Boolean(opts['with-decryption']) })
  )
  if (opts.query === 'Parameter.Value' && opts.output === 'text')
    process.stdout.write(`${out.Parameter.Value}\n`)
  else if (opts.query === undefined)
    process.stdout.write(`${JSON.stringify({ Parameter: out.Parameter }, null, 4)}\n`)
  else return false
  return true
}

async function main(argv) {
  const { words, opts } = parse(argv)
  const region = opts.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1'
  const [service, command, ...rest] = words
  let done = false
  try {
    if (service === 's3' && command === 'cp' && rest.length === 2) done = await s3cp(rest[0], rest[1], region)
    else if (service === 's3' && command === 'ls' && rest.length === 1) done = await s3ls(rest[0], region)
    else if (service === 'ssm' && command === 'get-parameter' && opts.name && rest.length === 0)
      done = await getParameter(opts, region)
  } catch (err) {
    // The real CLI's wording, so that scripts' error handling sees what it would see on AWS.
    process.stderr.write(
      `\nAn error occurred (${err.name}) when calling the ${operation} operation: ${err.message}\n`
    )
    process.exit(service === 's3' ? 1 : 254)
  }
  if (!done) usage(argv)
}

await main(process.argv.slice(2))
