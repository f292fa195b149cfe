/**
 * /healthz (the process and its event loop are alive), /readyz (broker connected and runtime
 * reachable, SPEC §5) and /metrics on ASYA_METRICS_ADDR. Plain node:http: three fixed routes do
 * not need a framework in a process that must stay small.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Registry } from 'prom-client'
import { errorMessage } from '../src/errors.js'

export interface HealthServerOptions {
  host: string
  port: number
  registry: Registry
  /** Readiness with the reasons when not ready. */
  readiness: () => { ready: boolean; checks: Record<string, boolean> }
}

export class HealthServer {
  private server: Server | undefined

  constructor(private readonly o: HealthServerOptions) {}

  async listen(): Promise<AddressInfo> {
    const server = createServer((req, res) => {
      const url = (req.url ?? '/').split('?')[0]
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end()
        return
      }
      if (url === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}')
      } else if (url === '/readyz') {
        const r = this.o.readiness()
        res.writeHead(r.ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: r.ready ? 'ready' : 'not ready', checks: r.checks }))
      } else if (url === '/metrics') {
        this.o.registry.metrics().then(
          (body) => res.writeHead(200, { 'content-type': this.o.registry.contentType }).end(body),
          (err: unknown) => res.writeHead(500).end(errorMessage(err)),
        )
      } else {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}')
      }
    })
    server.keepAliveTimeout = 5000
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.o.port, this.o.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    return server.address() as AddressInfo
  }

  async close(): Promise<void> {
    const s = this.server
    this.server = undefined
    if (!s) return
    s.closeAllConnections()
    await new Promise<void>((resolve) => s.close(() => resolve()))
  }
}
