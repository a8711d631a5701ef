// Holds every AWS request of the tests to the contract rules of tools/aws-contract.mjs. A request
// that breaks a rule is answered with the rule's own message (as AWS would refuse it) and is also
// remembered, so that the test that made it fails even if the code under test swallows the error
// (see contract-setup.ts). A test that breaks a rule on purpose takes the violations itself.
import { ContractViolation, checkRequest, type Violation } from '../../tools/aws-contract.mjs'

interface ContractState {
  violations: Violation[]
}

const holder = globalThis as { __awsContract?: ContractState }
holder.__awsContract ??= { violations: [] }
const state: ContractState = holder.__awsContract

/** Checks one request; returns the error to answer with, or undefined when it keeps every rule. */
export function enforceContract(operation: string, input: object | undefined): ContractViolation | undefined {
  const violations = checkRequest(operation, input as Record<string, unknown>)
  if (violations.length === 0) return undefined
  state.violations.push(...violations)
  return new ContractViolation(operation, violations)
}

/** The violations so far, forgotten: for a test that breaks a rule on purpose. */
export function takeViolations(): Violation[] {
  return state.violations.splice(0)
}
