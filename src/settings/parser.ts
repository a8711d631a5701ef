// Reads inputs one by one and collects the problems, so that all of them are reported at once.
import * as core from '@actions/core'
import type { Form } from './forms.js'
import { INPUT_NAMES, type InputName } from './inputs.js'

export class SettingsError extends Error {
  constructor(readonly problems: string[]) {
    super(
      problems.length === 1
        ? `Invalid input: ${problems[0]}`
        : `${problems.length} invalid inputs:\n${problems.map((p) => `  - ${p}`).join('\n')}`
    )
    this.name = 'SettingsError'
  }
}

export type InputReader = (name: string) => string

/** Splits a list input on commas, newlines (and, for word lists, spaces). */
export const splitList = (value: string, onSpaces = false): string[] =>
  value
    .split(onSpaces ? /[\s,]+/ : /[\n,]+/)
    .map((item) => item.trim())
    .filter((item) => item.length > 0)

/** "'<input>': '<value>' is not valid; expected <accepted>", the value cut to 80 characters. */
export function invalid(name: InputName, value: string, accepted: string): string {
  const shown = value.length > 80 ? `${value.slice(0, 77)}...` : value
  return `'${name}': '${shown}' is not valid; expected ${accepted}`
}

/** "'<input>' is required <why>". */
export const required = (name: InputName, why: string): string => `'${name}' is required ${why}`

/**
 * Reads each input once (trimmed) and keeps its problems. They are listed in the order of the
 * inputs table whatever order the readers run in; several problems of one input keep their order.
 */
export class InputParser {
  private readonly values = new Map<InputName, string>()
  private readonly found: Array<{ order: number; text: string }> = []

  constructor(private readonly read: InputReader) {}

  /** The input as given, trimmed; '' when empty. */
  raw(name: InputName): string {
    let value = this.values.get(name)
    if (value === undefined) {
      value = this.read(name).trim()
      this.values.set(name, value)
    }
    return value
  }

  /** Whether the input is set (not empty), valid or not. */
  given(name: InputName): boolean {
    return this.raw(name) !== ''
  }

  /** Every problem found so far, in the order of the inputs table. */
  get problems(): string[] {
    return [...this.found].sort((a, b) => a.order - b.order).map((p) => p.text)
  }

  /** A problem of one input, in words of its own. */
  add(name: InputName, text: string): void {
    this.found.push({ order: INPUT_NAMES.indexOf(name), text })
  }

  problem(name: InputName, value: string, accepted: string): void {
    this.add(name, invalid(name, value, accepted))
  }

  optional(name: InputName, form: Form): string | undefined {
    const value = this.raw(name)
    if (value === '') return undefined
    if (!form.pattern.test(value)) {
      this.problem(name, value, form.accepted)
      return undefined
    }
    return value
  }

  oneOf<T extends string>(name: InputName, choices: readonly T[], fallback?: T): T | undefined {
    const value = this.raw(name)
    if (value === '') return fallback
    if (!(choices as readonly string[]).includes(value)) {
      this.problem(name, value, `one of ${choices.map((c) => `'${c}'`).join(', ')}`)
      return fallback
    }
    return value as T
  }

  boolean(name: InputName, fallback: boolean): boolean {
    return this.optionalBoolean(name) ?? fallback
  }

  optionalBoolean(name: InputName): boolean | undefined {
    const value = this.raw(name)
    if (value === '') return undefined
    if (/^(true|yes)$/i.test(value)) return true
    if (/^(false|no)$/i.test(value)) return false
    this.problem(name, value, "'true' or 'false'")
    return undefined
  }

  integer(name: InputName, min: number, max: number): number | undefined {
    const value = this.raw(name)
    if (value === '') return undefined
    const n = /^\d+$/.test(value) ? Number(value) : Number.NaN
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      this.problem(name, value, `a whole number from ${min} to ${max}`)
      return undefined
    }
    return n
  }

  list(name: InputName, form: Form, onSpaces = false): string[] {
    const items = splitList(this.raw(name), onSpaces)
    for (const item of items.filter((i) => !form.pattern.test(i))) this.problem(name, item, form.accepted)
    return items.filter((item) => form.pattern.test(item))
  }

  /** An ISO 8601 time with its zone, such as aws-actions/configure-aws-credentials' aws-expiration output. */
  timestamp(name: InputName): Date | undefined {
    const value = this.raw(name)
    if (value === '') return undefined
    const time = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/.test(value)
      ? new Date(value)
      : undefined
    if (!time || Number.isNaN(time.getTime())) {
      this.problem(
        name,
        value,
        'an ISO 8601 time with its zone, such as 2026-01-01T13:00:00Z (the aws-expiration output)'
      )
      return undefined
    }
    return time
  }

  /** A PEM value from a secret: masked before anything else, never echoed. */
  secret(name: InputName, form: Form): string | undefined {
    const value = this.raw(name)
    if (value === '') return undefined
    core.setSecret(value)
    for (const line of value.split(/\r?\n/)) {
      if (line.length >= 8 && !line.startsWith('-----')) core.setSecret(line)
    }
    if (!form.pattern.test(value)) {
      this.add(name, `'${name}': the value (hidden) is not ${form.accepted}`)
      return undefined
    }
    return value
  }
}
