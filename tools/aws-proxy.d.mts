// Types for tools/aws-proxy.mjs (run by tools/emulator-session.mjs, tested in TypeScript).
import type { Server } from 'node:http'

// biome-ignore lint/suspicious/noExplicitAny: decoded requests of many operations
type Input = Record<string, any>

export function decodeEc2Query(body: string): { operation: string; input: Input }
export function decodeS3(
  method: string,
  url: string,
  host: string | undefined,
  body: string
): { operation: string; input: Input }
export function startProxy(options: {
  motoUrl: string
  ssmUrl?: string
  port?: number
  lag?: number
}): Promise<Server>
