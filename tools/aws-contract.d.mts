// Types for tools/aws-contract.mjs (used by tools/aws-proxy.mjs as JavaScript, by the tests as TypeScript).
// biome-ignore lint/suspicious/noExplicitAny: requests of many operations, read loosely by the rules
type Input = Record<string, any>

export interface Rule {
  id: string
  operation: string
  source: string
  sentence: string
  check(input: Input): string | undefined
  pass: Input
  fail: Input
}

export interface Violation {
  rule: Rule
  problem: string
  message: string
}

export const RULES: Rule[]
export function violationMessage(rule: Rule, problem: string): string
export function checkRequest(operation: string, input: Input | undefined): Violation[]
export function ruleCounts(): Record<string, number>
export class ContractViolation extends Error {
  constructor(operation: string, violations: Violation[])
  operation: string
  violations: Violation[]
}
