// What the local HTTP servers in front of moto have in common (the contract proxy aws-proxy.mjs,
// the SSM and EC2 stand-ins, the EBS latency endpoint): read a request whole, pass it on to the
// server behind as it came, send an answer back, and word an EC2 error as EC2 does.
import { randomUUID } from 'node:crypto'
import { request as httpRequest } from 'node:http'

/** The whole body of an incoming request. */
export async function readBody(req) {
  const chunks = []
  for await (const c of req) chunks.push(c)
  return Buffer.concat(chunks)
}

/**
 * Sends the request on to TARGET (method, path, headers and body as they came; Host names the
 * target) and resolves with its whole answer: { status, headers, body }.
 */
export function passOn(target, req, body) {
  const url = new URL(req.url ?? '/', target)
  return new Promise((resolve, reject) => {
    const out = httpRequest(
      url,
      { method: req.method, headers: { ...req.headers, host: url.host } },
      (answer) => {
        const chunks = []
        answer.on('data', (c) => chunks.push(c))
        answer.on('error', reject)
        answer.on('end', () =>
          resolve({ status: answer.statusCode ?? 502, headers: answer.headers, body: Buffer.concat(chunks) })
        )
      }
    )
    out.on('error', reject)
    out.end(body)
  })
}

/**
 * Sends a whole answer with its own length, never chunked (its body may have been rewritten). A
 * HEAD answer keeps the Content-Length it came with (the object's size, with no body).
 */
export function sendAnswer(res, answer) {
  const headers = { ...answer.headers }
  if (answer.rewritten || headers['transfer-encoding'] || headers['content-length'] === undefined)
    headers['content-length'] = String(answer.body.length)
  delete headers['transfer-encoding']
  res.writeHead(answer.status, headers)
  res.end(answer.body)
}

/** passOn, then the answer back to the client; 502 with WHO's name when TARGET does not answer. */
export async function relay(target, req, body, res, who) {
  let answer
  try {
    answer = await passOn(target, req, body)
  } catch (err) {
    answer = {
      status: 502,
      headers: { 'content-type': 'text/plain' },
      body: Buffer.from(`${who}: ${target} did not answer: ${err.message}`)
    }
  }
  sendAnswer(res, answer)
}

export const escapeXml = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** An EC2 query API error document, as EC2 sends it with a 4xx/5xx status. */
export const ec2ErrorXml = (code, message) =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${code}</Code><Message>${escapeXml(message)}</Message></Error></Errors><RequestID>${randomUUID()}</RequestID></Response>`
