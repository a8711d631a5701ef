// EC2 stand-in for the verify-boot end-to-end tests: test infrastructure, not product.
//
// moto launches any AMI at once with both status checks `ok`, and answers GetConsoleOutput with a
// fixed 2006 Xen boot log. Point AWS_ENDPOINT_URL_EC2 here: every EC2 request goes to moto
// unchanged, except DescribeInstanceStatus and GetConsoleOutput for an instance launched from an
// AMI whose name has a scenario (`setScenario(name, …)`): those answer the scenario's status
// checks (one answer per call, the last repeats) and console text. And as on EC2, GetConsoleOutput
// with Latest fails on a Xen instance type ("This option is supported on instance types that use
// the Nitro hypervisor.", EC2 API reference), for every instance.
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import {
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeInstanceTypesCommand,
  EC2Client
} from '@aws-sdk/client-ec2'
import { ec2ErrorXml, readBody, relay } from './http-relay.mjs'

const NS = 'http://ec2.amazonaws.com/doc/2016-11-15/'
const STATE_CODES = {
  pending: 0,
  running: 16,
  'shutting-down': 32,
  terminated: 48,
  stopping: 64,
  stopped: 80
}

function xml(action, body) {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${NS}"><requestId>${randomUUID()}</requestId>${body}</${action}Response>`
}

const check = (status) =>
  `<status>${status}</status><details><item><name>reachability</name><status>${
    status === 'ok'
      ? 'passed'
      : status === 'impaired'
        ? 'failed'
        : status === 'initializing'
          ? 'initializing'
          : 'insufficient-data'
  }</status></item></details>`

/**
 * Starts the stand-in in this process. Returns { url, setScenario(amiName, { statuses, console }),
 * calls (what it answered itself), close() }.
 */
export async function startEc2BootStandin({ motoUrl, region, credentials }) {
  const ec2 = new EC2Client({ endpoint: motoUrl, region, credentials })
  const scenarios = new Map()
  const counts = new Map()
  const hypervisors = new Map()
  const calls = []

  async function instanceOf(id) {
    const out = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))
    return out.Reservations?.[0]?.Instances?.[0]
  }

  async function scenarioOf(instance) {
    if (!instance?.ImageId) return undefined
    const images = await ec2
      .send(new DescribeImagesCommand({ ImageIds: [instance.ImageId] }))
      .catch(() => undefined)
    const name = images?.Images?.[0]?.Name
    return name === undefined ? undefined : scenarios.get(name)
  }

  async function hypervisorOf(type) {
    if (!hypervisors.has(type)) {
      const out = await ec2.send(new DescribeInstanceTypesCommand({ InstanceTypes: [type] }))
      hypervisors.set(type, out.InstanceTypes?.[0]?.Hypervisor ?? 'xen')
    }
    return hypervisors.get(type)
  }

  /** Our answer for this request, or undefined to forward it to moto. */
  async function answer(params) {
    const action = params.get('Action')
    if (action === 'GetConsoleOutput') {
      const id = params.get('InstanceId')
      const instance = await instanceOf(id).catch(() => undefined)
      if (!instance) return undefined // moto's own InvalidInstanceID.NotFound
      if (params.get('Latest') === 'true' && (await hypervisorOf(instance.InstanceType)) !== 'nitro')
        return {
          status: 400,
          body: ec2ErrorXml(
            'UnsupportedOperation',
            `The latest console output is supported only on instance types that use the Nitro hypervisor, not on ${instance.InstanceType}.`
          )
        }
      const scenario = await scenarioOf(instance)
      if (!scenario) return undefined
      calls.push({ action, instanceId: id, latest: params.get('Latest') === 'true' })
      const output = scenario.console ? Buffer.from(scenario.console).toString('base64') : ''
      return {
        status: 200,
        body: xml(
          action,
          `<instanceId>${id}</instanceId><timestamp>${new Date().toISOString()}</timestamp><output>${output}</output>`
        )
      }
    }
    if (action === 'DescribeInstanceStatus') {
      const ids = [...params.entries()].filter(([k]) => /^InstanceId\.\d+$/.test(k)).map(([, v]) => v)
      if (ids.length !== 1) return undefined
      const [id] = ids
      const instance = await instanceOf(id).catch(() => undefined)
      const scenario = await scenarioOf(instance)
      if (!scenario) return undefined
      const state = instance.State?.Name
      const all = params.get('IncludeAllInstances') === 'true'
      calls.push({ action, instanceId: id })
      // "By default, only running instances are described, unless you specifically indicate to
      // return the status of all instances." (DescribeInstanceStatus)
      if (state !== 'running' && !all) return { status: 200, body: xml(action, '<instanceStatusSet/>') }
      let checks = { instance: 'not-applicable', system: 'not-applicable' }
      if (state === 'running') {
        const n = counts.get(id) ?? 0
        counts.set(id, n + 1)
        checks = scenario.statuses[Math.min(n, scenario.statuses.length - 1)]
      }
      const item = `<item><instanceId>${id}</instanceId><availabilityZone>${instance.Placement?.AvailabilityZone ?? ''}</availabilityZone><instanceState><code>${STATE_CODES[state] ?? 0}</code><name>${state}</name></instanceState><systemStatus>${check(checks.system)}</systemStatus><instanceStatus>${check(checks.instance)}</instanceStatus></item>`
      return { status: 200, body: xml(action, `<instanceStatusSet>${item}</instanceStatusSet>`) }
    }
    return undefined
  }

  const server = createServer(async (req, res) => {
    const body = await readBody(req)
    try {
      const ours =
        req.method === 'POST' ? await answer(new URLSearchParams(body.toString('utf8'))) : undefined
      if (!ours) return relay(motoUrl, req, body, res, 'ec2-boot-standin')
      res.writeHead(ours.status, { 'content-type': 'text/xml;charset=UTF-8' })
      res.end(ours.body)
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/xml;charset=UTF-8' })
      res.end(ec2ErrorXml('InternalError', `ec2-boot-standin: ${err.message}`))
    }
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    /** statuses: [{ instance, system }] per DescribeInstanceStatus (last repeats); console: text. */
    setScenario(amiName, { statuses = [{ instance: 'ok', system: 'ok' }], console = '' } = {}) {
      scenarios.set(amiName, { statuses, console })
    },
    async close() {
      server.closeAllConnections?.()
      await new Promise((resolve) => server.close(() => resolve()))
      ec2.destroy()
    }
  }
}
