import { describe, expect, it } from '@jest/globals'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gunzipSync } from 'node:zlib'
import {
  CancelCommandCommand,
  GetCommandInvocationCommand,
  SendCommandCommand,
  SSMClient
} from '@aws-sdk/client-ssm'
import { mockClient } from 'aws-sdk-client-mock'
import {
  buildCommand,
  JOURNAL_DIR,
  parseResults,
  RemoteCommandError,
  runRemoteScript,
  SSM_DOCUMENT_LIMIT
} from '../../src/aws/remote-script.js'
import { Ledger } from '../../src/pipeline/ledger.js'
import { ledgerTracker } from '../../src/pipeline/remote-command.js'
import { CancelledError } from '../../src/errors.js'
import { companions, scripts } from '../../src/scripts/index.js'
import { serviceError } from '../__fixtures__/errors.js'

const notYet = () => serviceError('InvocationDoesNotExist')

function setup() {
  const ssm = mockClient(SSMClient)
  ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-1' } })
  const saved: string[] = []
  const ledger = new Ledger('us-east-1', [], (j) => saved.push(j))
  const base = {
    ssm: new SSMClient({ region: 'us-east-1' }),
    instanceId: 'i-0123456789abcdef0',
    script: 'bundle.sh' as const,
    args: ['--volume-id', "vol-1 it's"],
    purpose: 'write the image',
    timeoutMinutes: 30,
    signal: new AbortController().signal,
    tracker: ledgerTracker(ledger, 'i-0123456789abcdef0'),
    pollDelayMs: 1
  }
  return { ssm, ledger, saved, base }
}

describe('buildCommand', () => {
  it('writes common.sh and the script beside it and runs the script with quoted arguments', () => {
    const dir = mkdtempSync(join(tmpdir(), 'i2e-cmd-'))
    const text = buildCommand('bundle.sh', ['--x', "it's $HOME"])
    // Run the command text with a stand-in for the script body, to prove the quoting survives a shell.
    const probe = text.replace(/bash "\$d\/bundle\.sh"/, 'printf "%s|" ')
    writeFileSync(join(dir, 'cmd.sh'), probe)
    try {
      expect(execFileSync('sh', [join(dir, 'cmd.sh')], { encoding: 'utf8' })).toBe("--x|it's $HOME|")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
    expect(text).toContain('base64 -d <<\'I2E_EOF_common_sh\' | gunzip -c > "$d/common.sh"')
    // What the instance unpacks is the script itself, byte for byte.
    const packed = /<<'I2E_EOF_common_sh'[^\n]*\n([\s\S]*?)\nI2E_EOF_common_sh\n/.exec(text)?.[1] ?? ''
    const unpacked = gunzipSync(Buffer.from(packed.replace(/\n/g, ''), 'base64')).toString('utf8')
    expect(unpacked).toContain('::result %s=%s')
    expect(unpacked).toBe(scripts['common.sh']())
  })
})

describe('command size', () => {
  // SendCommand may answer MaxDocumentSizeExceeded: "The size limit of a document is 64 KB"
  // (SSM API reference, SendCommand errors). The command text carries the scripts whole.
  it.each(['convert.sh', 'bundle.sh'] as const)('%s with its companions stays under 64 KB', (script) => {
    const text = buildCommand(script, [
      '--manifest',
      's3://bucket/prefix/image.manifest.xml',
      '--output-virtualization-type',
      'hvm'
    ])
    expect(Buffer.byteLength(text)).toBeLessThan(64 * 1024)
  })
})

describe('parseResults', () => {
  it('reads result lines and the failure reason', () => {
    expect(parseResults('progress\n::result a=1\n::result b=x=y\n::fail part 2 digest mismatch\n')).toEqual({
      results: { a: '1', b: 'x=y' },
      reason: 'part 2 digest mismatch'
    })
  })
})

describe('runRemoteScript', () => {
  it('sends AWS-RunShellScript with the execution timeout, tolerates a not-yet-visible invocation, returns results', async () => {
    const { ssm, base, saved, ledger } = setup()
    ssm
      .on(GetCommandInvocationCommand)
      .rejectsOnce(notYet())
      .resolvesOnce({ Status: 'InProgress', StatusDetails: 'InProgress' })
      .resolves({
        Status: 'Success',
        StatusDetails: 'Success',
        ResponseCode: 0,
        StandardOutputContent: '::result digest=ok\n'
      })
    const result = await runRemoteScript({ ...base, logGroup: '/i2e' })
    expect(result.results).toEqual({ digest: 'ok' })
    expect(result.truncated).toBe(false)
    const send = ssm.commandCalls(SendCommandCommand)[0]?.args[0].input
    expect(send?.DocumentName).toBe('AWS-RunShellScript')
    expect(send?.Parameters?.executionTimeout).toEqual(['1800'])
    expect(send?.CloudWatchOutputConfig).toEqual({
      CloudWatchOutputEnabled: true,
      CloudWatchLogGroupName: '/i2e'
    })
    expect(send?.Parameters?.commands?.[0]).toContain(`'vol-1 it'\\''s'`)
    // The undo journal was in the ledger before the command was sent, the command while it ran;
    // both are forgotten once it succeeded (the script undid its own changes).
    expect(saved[0]).toContain('"kind":"remote-undo"')
    expect(saved[1]).toContain('cmd-1')
    const journal = JSON.parse(saved[0] ?? '[]')[0].id as string
    expect(journal).toMatch(/^\/var\/tmp\/instance-to-ebs\/[0-9a-f-]{36}\.journal$/)
    expect(send?.Parameters?.commands?.[0]).toContain(`export I2E_JOURNAL='${journal}'`)
    expect(ledger.entries()).toEqual([])
    ssm.restore()
  })

  it.each([
    ['Failed', 'Failed', 1, 'failed: part image.part.1 digest mismatch'],
    ['TimedOut', 'ExecutionTimedOut', -1, 'ran longer than timeout-minutes'],
    ['TimedOut', 'DeliveryTimedOut', -1, 'was never delivered'],
    ['Failed', 'Undeliverable', -1, 'could not be delivered'],
    ['Cancelled', 'Cancelled', -1, 'was cancelled'],
    ['Failed', 'Terminated', -1, 'was terminated'],
    ['Failed', 'InvalidPlatform', -1, 'does not run on this platform'],
    ['Failed', 'AccessDenied', -1, 'was refused']
  ])('maps %s/%s to a clear message', async (status, details, code, expected) => {
    const { ssm, base } = setup()
    ssm.on(GetCommandInvocationCommand).resolves({
      Status: status as 'Failed',
      StatusDetails: details,
      ResponseCode: code,
      StandardOutputContent:
        code === 1 ? 'streaming\n::fail part image.part.1 digest mismatch\n' : 'line one\nline two\n'
    })
    const attempt = runRemoteScript(base)
    await expect(attempt).rejects.toBeInstanceOf(RemoteCommandError)
    await expect(attempt).rejects.toThrow(expected)
    if (code !== 1) await expect(attempt).rejects.toThrow('Last lines:\nline one\nline two')
    ssm.restore()
  })

  it('polls the live output once more after the command ends, so its last lines are shown', async () => {
    const { ssm, base } = setup()
    const seen: string[] = []
    ssm.on(GetCommandInvocationCommand).resolvesOnce({ Status: 'InProgress' }).resolves({
      Status: 'Failed',
      StatusDetails: 'Failed',
      ResponseCode: 1,
      StandardOutputContent: '::fail x\n'
    })
    const onPoll = async (id: string) => {
      seen.push(`${id} after ${ssm.commandCalls(GetCommandInvocationCommand).length} checks`)
    }
    await expect(runRemoteScript({ ...base, onPoll })).rejects.toThrow('failed: x')
    expect(seen).toEqual(['cmd-1 after 0 checks', 'cmd-1 after 1 checks', 'cmd-1 after 2 checks'])
    ssm.restore()
  })

  it('says when SSM cut the output, and where the rest is', async () => {
    const { ssm, base } = setup()
    ssm.on(GetCommandInvocationCommand).resolves({
      Status: 'Failed',
      StatusDetails: 'Failed',
      ResponseCode: 2,
      StandardOutputContent: 'x'.repeat(24000)
    })
    await expect(runRemoteScript(base)).rejects.toThrow('set log-group to keep all of it')
    await expect(runRemoteScript({ ...base, logGroup: 'g' })).rejects.toThrow(
      'all of it is in log group g, stream cmd-1/i-0123456789abcdef0/aws-runShellScript/stdout'
    )
    ssm.restore()
  })

  it('cancels the command when the job is cancelled', async () => {
    const { ssm, base, ledger } = setup()
    const controller = new AbortController()
    ssm.on(GetCommandInvocationCommand).callsFake(async () => {
      controller.abort()
      return { Status: 'InProgress' }
    })
    ssm.on(CancelCommandCommand).resolves({})
    await expect(runRemoteScript({ ...base, signal: controller.signal })).rejects.toBeInstanceOf(
      CancelledError
    )
    expect(ssm).toHaveReceivedCommandWith(CancelCommandCommand, {
      CommandId: 'cmd-1',
      InstanceIds: ['i-0123456789abcdef0']
    })
    // Both left for the unwinding and the post step, newest first: the cleanup waits until the
    // command has ended, then cleanup.sh undoes what the SIGKILL interrupted.
    expect(
      ledger.entries().map((r) => `${r.kind} ${r.kind === 'command' ? r.id : r.detail?.instanceId}`)
    ).toEqual(['remote-undo i-0123456789abcdef0', 'command cmd-1'])
    ssm.restore()
  })

  it('keeps the undo journal in the ledger after a timeout, and forgets it if the command was never sent', async () => {
    const { ssm, base, ledger } = setup()
    ssm.on(GetCommandInvocationCommand).resolves({
      Status: 'TimedOut',
      StatusDetails: 'ExecutionTimedOut',
      ResponseCode: 137
    })
    await expect(runRemoteScript(base)).rejects.toThrow('ran longer than timeout-minutes')
    expect(ledger.entries().map((r) => r.kind)).toEqual(['remote-undo'])
    ssm.restore()

    const refused = setup()
    refused.ssm.on(SendCommandCommand).rejects(serviceError('MaxDocumentSizeExceeded', 'too big'))
    await expect(runRemoteScript(refused.base)).rejects.toThrow('too big')
    expect(refused.ledger.entries()).toEqual([])
    refused.ssm.restore()
  })
})

describe('scripts', () => {
  it.each(['convert.sh', 'bundle.sh'] as const)('%s ships with the files it sources', (script) => {
    const text = buildCommand(script, [])
    const sourced = [...scripts[script]().matchAll(/\/([a-z-]+\.sh)"?\s*$/gm)].map((m) => m[1] as string)
    for (const file of [...companions[script], ...sourced.filter((f) => f in scripts)])
      expect(text).toContain(`| gunzip -c > "$d/${file}"`)
  })
  // The command as SendCommand carries it, run by sh as the agent does: convert.sh and the files it
  // sources are unpacked beside it and it rebuilds a real bundle. Without one of its companions the
  // same command fails: what is shipped is what runs.
  describe('convert.sh as shipped rebuilds a bundle', () => {
    const bundle = fileURLToPath(new URL('../../fixtures/bundles/small-pv/', import.meta.url))
    const run = (text: string) => {
      const dir = mkdtempSync(join(tmpdir(), 'i2e-shipped-'))
      try {
        writeFileSync(join(dir, 'cmd.sh'), text)
        return spawnSync('sh', [join(dir, 'cmd.sh')], {
          encoding: 'utf8',
          env: { PATH: process.env.PATH, TMPDIR: dir }
        })
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }
    const command = (dir: string) =>
      buildCommand('convert.sh', [
        '--manifest',
        join(bundle, 'image.manifest.xml'),
        '--key',
        join(bundle, 'test-key.pem'),
        '--target',
        join(dir, 'disk.img')
      ])

    it('with all its companions', () => {
      const out = mkdtempSync(join(tmpdir(), 'i2e-shipped-out-'))
      try {
        const text = command(out)
        for (const file of companions['convert.sh']) expect(text).toContain(`| gunzip -c > "$d/${file}"`)
        const done = run(text)
        expect(done.stdout).toContain('::result digest=ok')
        expect(done.stdout).toContain('::result image_bytes=33554432')
        expect(done.status).toBe(0)
        expect(statSync(join(out, 'disk.img')).size).toBe(33554432)
      } finally {
        rmSync(out, { recursive: true, force: true })
      }
    })

    it.each(companions['convert.sh'])('fails without %s', (missing) => {
      const out = mkdtempSync(join(tmpdir(), 'i2e-shipped-out-'))
      try {
        const marker = `I2E_EOF_${missing.replace(/\W/g, '_')}`
        const text = command(out).replace(
          new RegExp(`base64 -d <<'${marker}'[\\s\\S]*?\\n${marker}\\n[^\\n]*\\n`),
          ''
        )
        expect(text).not.toContain(`$d/${missing}`)
        const done = run(text)
        expect(done.status).not.toBe(0)
        expect(done.stdout).not.toContain('::result digest=ok')
      } finally {
        rmSync(out, { recursive: true, force: true })
      }
    })
  })
})

// "The size limit of a document is 64 KB" (SendCommand, MaxDocumentSizeExceeded). Measured on every
// command the action sends, with long arguments, as SendCommand's JSON carries it (escapes included),
// leaving 2 KB for the AWS-RunShellScript document itself.
describe('the command text stays under the SendCommand document limit', () => {
  const long = 'x'.repeat(200)
  const journal = `${JOURNAL_DIR}/00000000-0000-0000-0000-000000000000.journal`
  it.each([
    ['bundle.sh', Array.from({ length: 20 }, (_, i) => (i % 2 ? long : `--a${i}`))],
    ['convert.sh', Array.from({ length: 12 }, (_, i) => (i % 2 ? long : `--a${i}`))],
    ['cleanup.sh', ['--journal', journal]]
  ] as const)('%s', (script, args) => {
    const parameters = { commands: [buildCommand(script, [...args], journal)], executionTimeout: ['172800'] }
    const bytes = Buffer.byteLength(JSON.stringify(parameters))
    expect(bytes).toBeLessThan(SSM_DOCUMENT_LIMIT - 2048)
  })
})
