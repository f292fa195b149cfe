/**
 * A real HTTP server standing in for the gateway's report endpoints in sidecar tests: records
 * every request and answers with a programmable status (per request, in order), so tests can
 * make the gateway fail, recover or reject.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface RecordedRequest {
  method: string
  url: string
  body: Record<string, unknown>
  status: number
}

export interface RecordingGateway {
  url: string
  requests: RecordedRequest[]
  /** Statuses for the next requests, in order; afterwards `fallback`. */
  respond(statuses: number[], fallback?: number): void
  /** Resolves once `n` requests matching `filter` arrived. */
  waitFor(n: number, filter?: (r: RecordedRequest) => boolean, timeoutMs?: number): Promise<RecordedRequest[]>
  close(): Promise<void>
}

export async function startRecordingGateway(): Promise<RecordingGateway> {
  const requests: RecordedRequest[] = []
  let queue: number[] = []
  let fallback = 200
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const status = queue.shift() ?? fallback
      let body: Record<string, unknown> = {}
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>
      } catch {
        body = { unparseable: Buffer.concat(chunks).toString('utf8') }
      }
      requests.push({ method: req.method ?? '', url: req.url ?? '', body, status })
      res.writeHead(status, { 'content-type': 'application/json' }).end(status < 300 ? '{"ok":true}' : '{"error":"test gateway says no"}')
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    respond: (statuses, fb = 200) => {
      queue = [...statuses]
      fallback = fb
    },
    waitFor: async (n, filter = () => true, timeoutMs = 20_000) => {
      const end = Date.now() + timeoutMs
      for (;;) {
        const got = requests.filter(filter)
        if (got.length >= n) return got
        if (Date.now() > end) throw new Error(`gateway: ${got.length} of ${n} requests within ${timeoutMs} ms`)
        await new Promise((r) => setTimeout(r, 25))
      }
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
}
