// Jest setup (jest.config.js setupFilesAfterEnv): every client that aws-sdk-client-mock mocks
// checks each command against the AWS contract rules before the mock answers, and a test that
// sent a request breaking a rule fails afterwards with the rule's message.
//
// aws-sdk-client-mock replaces a client's `send` with a sinon stub (mockClient → sinon.stub(proto,
// 'send')). Wrapping sinon.stub here puts a checking Proxy in front of that stub: the Proxy passes
// every property through (calls, withArgs, restore…), so the mock and its jest matchers work as
// before, and restore() still deletes what is installed.
import { afterEach } from '@jest/globals'
import { createRequire } from 'node:module'
import { enforceContract, takeViolations } from './contract.js'

type Stub = (...args: unknown[]) => unknown
// The CommonJS sinon that aws-sdk-client-mock requires (an ESM import would load sinon's own ESM copy).
const sinon = createRequire(import.meta.url)('sinon')
const s = sinon as unknown as { stub: (object?: object, property?: string) => Stub; __contract?: boolean }

if (!s.__contract) {
  s.__contract = true
  const original = s.stub
  s.stub = function stub(this: unknown, object?: object, property?: string) {
    const created = original.call(this, object, property)
    if (
      !object ||
      property !== 'send' ||
      !('middlewareStack' in object || 'config' in object || isClientPrototype(object))
    )
      return created
    const checked = new Proxy(created, {
      apply(target, self, args) {
        const command = args[0] as { constructor: { name: string }; input?: object } | undefined
        const operation = command?.constructor?.name.replace(/Command$/, '')
        const refused = operation ? enforceContract(operation, command?.input) : undefined
        if (refused) return Promise.reject(refused)
        return Reflect.apply(target, self, args)
      }
    })
    ;(object as Record<string, unknown>).send = checked
    return checked
  } as typeof original
}

function isClientPrototype(object: object): boolean {
  return /Client$/.test((object as { constructor?: { name?: string } }).constructor?.name ?? '')
}

afterEach(() => {
  const violations = takeViolations()
  if (violations.length > 0)
    throw new Error(
      `${violations.length} AWS request(s) broke the contract rules:\n${violations.map((v) => `  - ${v.message}`).join('\n')}`
    )
})
