/**
 * An OTLP/HTTP sink in its own process for bench/tracing.bench.ts: accepts POST /v1/traces (JSON),
 * counts spans, answers 200. Prints its port on the first stdout line; GET /count answers the
 * spans received so far.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

let spans = 0
const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/count') {
    res.end(String(spans))
    return
  }
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const text = Buffer.concat(chunks).toString('utf8')
    // A span object carries exactly one "spanId" key (parents are "parentSpanId").
    spans += text.split('"spanId"').length - 1
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
  })
})
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`)
})
process.on('SIGTERM', () => server.close(() => process.exit(0)))
