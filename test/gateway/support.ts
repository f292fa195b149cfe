/**
 * Gateway test support: a private PostgreSQL database per test file (created on the server the test
 * set-up guarantees, dropped at teardown), an in-process gateway on any store and transport, and a
 * real SSE client over HTTP.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { readGatewayConfig, type GatewayConfig } from '../../gateway/config.js'
import { Gateway, type GatewayPlugin } from '../../gateway/gateway.js'
import { MemoryEnvelopeStore } from '../../gateway/store/memory-store.js'
import { PgEnvelopeStore } from '../../gateway/store/pg-store.js'
import type { EnvelopeStore } from '../../gateway/store/store.js'
import { parseToolConfig } from '../../gateway/tool-config.js'
import { createLogger } from '../../src/logger.js'
import { MemoryBroker, MemoryTransport } from '../../src/transport/memory-transport.js'
import type { Transport } from '../../src/transport/transport.js'

/** Admin URL of the test server (trust auth); the set-up (scripts/ensure-postgres.mjs) starts it. */
export const PG_ADMIN_URL = process.env.ASYA_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

export interface Teardown {
  teardown(fn: () => unknown): void
}

/** Creates a fresh database for this test file; returns its URL. Dropped at teardown. */
export async function testDatabase(t: Teardown): Promise<string> {
  const name = `asya_gw_${randomBytes(5).toString('hex')}`
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: PG_ADMIN_URL })
    await c.connect()
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined)
    await c.end()
  })
  const u = new URL(PG_ADMIN_URL)
  u.pathname = `/${name}`
  return u.toString()
}

export const quietLogger = () => createLogger('asya-gateway', { level: process.env.ASYA_TEST_LOG_LEVEL ?? 'silent' })

export type StoreKind = 'memory' | 'postgres'

export async function makeStore(t: Teardown, kind: StoreKind, url?: string): Promise<EnvelopeStore> {
  const store = kind === 'memory' ? new MemoryEnvelopeStore() : new PgEnvelopeStore({ url: url ?? (await testDatabase(t)), logger: quietLogger(), maxConnections: 10 })
  await store.start()
  t.teardown(() => store.close())
  return store
}

export interface TestGateway {
  gateway: Gateway
  url: string
  transport: Transport
  store: EnvelopeStore
}

export interface TestGatewayOptions {
  store?: EnvelopeStore
  /** Builds a PostgreSQL store on this URL (owned by the gateway). */
  databaseUrl?: string
  tools?: string
  transport?: Transport
  env?: Record<string, string>
  plugins?: GatewayPlugin[]
}

export async function startGateway(t: Teardown, o: TestGatewayOptions = {}): Promise<TestGateway> {
  const config: GatewayConfig = readGatewayConfig({
    ASYA_GATEWAY_PORT: '0',
    ASYA_GATEWAY_HOST: '127.0.0.1',
    ASYA_TRANSPORT: 'memory',
    ASYA_GATEWAY_SWEEP_INTERVAL: '100ms',
    ASYA_SHUTDOWN_TIMEOUT: '5s',
    ...(o.databaseUrl ? { ASYA_DATABASE_URL: o.databaseUrl } : {}),
    ...(o.env ?? {}),
  })
  const transport = o.transport ?? new MemoryTransport({ broker: new MemoryBroker() })
  const gateway = await Gateway.create({
    config,
    logger: quietLogger(),
    transport,
    ...(o.store ? { store: o.store } : {}),
    tools: parseToolConfig([{ file: 'routes.yaml', text: o.tools ?? DEFAULT_TOOLS }]),
    ...(o.plugins ? { plugins: o.plugins } : {}),
  })
  const addr = await gateway.start()
  t.teardown(() => gateway.stop())
  return { gateway, url: `http://127.0.0.1:${addr.port}`, transport, store: gateway.ctx.store }
}

export const DEFAULT_TOOLS = `
defaults: { progress: true, timeout: 60 }
routes:
  pipeline: [gw-a, gw-b, gw-c]
tools:
  - name: echo
    description: Echo through three actors
    parameters:
      text: { type: string, required: true, description: what to echo }
      count: { type: integer, default: 1 }
    route: pipeline
    metadata: { team: test }
  - name: nowhere
    description: first actor has no queue
    parameters: {}
    route: [gw-missing]
  - name: quick
    description: short deadline
    route: [gw-a]
    timeout: 1
    progress: false
`

export interface Reply {
  status: number
  headers: Headers
  text: string
  json: any
}

export async function request(url: string, o: { method?: string; token?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}), ...(o.token !== undefined ? { authorization: `Bearer ${o.token}` } : {}), ...(o.headers ?? {}) }
  const res = await fetch(url, { method: o.method ?? (o.body !== undefined ? 'POST' : 'GET'), headers, ...(o.body !== undefined ? { body: typeof o.body === 'string' ? o.body : JSON.stringify(o.body) } : {}) })
  const text = await res.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, text, json }
}

export async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return request(url, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } })
}

export async function get(url: string): Promise<Reply> {
  return request(url)
}

/** Calls a tool over POST /tools/call; returns the parsed content[0].text. */
export async function callTool(base: string, name: string, args: Record<string, unknown>): Promise<{ status: number; body: any; data: any }> {
  const r = await post(`${base}/tools/call`, { name, arguments: args })
  let data: unknown
  try {
    data = JSON.parse(r.json?.content?.[0]?.text)
  } catch {
    data = undefined
  }
  return { status: r.status, body: r.json, data }
}

export interface SseEvent {
  event?: string
  data?: any
  comment?: string
}

/** A real SSE client: collects events until the server closes the stream (or `timeoutMs`). */
export class SseClient {
  readonly events: SseEvent[] = []
  closedByServer = false
  finished = false
  status = 0
  private readonly ctrl = new AbortController()
  readonly done: Promise<void>
  private waiters: Array<() => void> = []
  private opened!: () => void
  readonly ready: Promise<void>

  constructor(url: string, timeoutMs = 30_000, headers: Record<string, string> = {}) {
    this.ready = new Promise((r) => (this.opened = r))
    const timer = setTimeout(() => this.ctrl.abort(), timeoutMs)
    this.done = (async () => {
      try {
        const res = await fetch(url, { signal: this.ctrl.signal, headers: { accept: 'text/event-stream', ...headers } })
        this.status = res.status
        this.opened()
        if (!res.body || res.status !== 200) return
        const dec = new TextDecoder()
        let buf = ''
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += dec.decode(chunk, { stream: true })
          let i: number
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i)
            buf = buf.slice(i + 2)
            const ev: SseEvent = {}
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) ev.comment = line.slice(1).trim()
              else if (line.startsWith('event: ')) ev.event = line.slice(7)
              else if (line.startsWith('data: ')) ev.data = JSON.parse(line.slice(6))
            }
            this.events.push(ev)
            for (const w of this.waiters.splice(0)) w()
          }
        }
        this.closedByServer = true
      } catch {
        // aborted
      } finally {
        clearTimeout(timer)
        this.finished = true
        this.opened()
        for (const w of this.waiters.splice(0)) w()
      }
    })()
  }

  get updates(): any[] {
    return this.events.filter((e) => e.event === 'update').map((e) => e.data)
  }

  /** Resolves once `pred` holds for the collected updates (or the stream ended). */
  async until(pred: (updates: any[]) => boolean): Promise<void> {
    while (!pred(this.updates) && !this.finished) await new Promise<void>((r) => this.waiters.push(r))
  }

  close(): void {
    this.ctrl.abort()
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Polls `pred` every 20 ms until it holds (or throws after `timeoutMs`). */
export async function until(pred: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

export interface GatewayProcess {
  url: string
  port: number
  proc: import('node:child_process').ChildProcess
  logs: string[]
  /** Sends `signal` and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

/** Starts the real entry point (gateway/main.ts) as its own process; resolves once it listens. */
export async function spawnGateway(t: Teardown, env: Record<string, string>): Promise<GatewayProcess> {
  const { spawn } = await import('node:child_process')
  const proc = spawn(process.execPath, ['--import', './scripts/register-ts.mjs', 'gateway/main.ts'], {
    env: { ...process.env, ASYA_GATEWAY_PORT: '0', ASYA_GATEWAY_HOST: '127.0.0.1', ASYA_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: string[] = []
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)))
  const port = await new Promise<number>((resolve, reject) => {
    let buf = ''
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString()
      let i: number
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        logs.push(line)
        try {
          const j = JSON.parse(line) as { msg?: string; port?: number }
          if (j.msg === 'gateway listening' && j.port) resolve(j.port)
        } catch {
          // not JSON
        }
      }
    })
    proc.stderr!.on('data', (d: Buffer) => logs.push(d.toString()))
    void exited.then((code) => reject(new Error(`gateway exited ${code}: ${logs.join('\n')}`)))
  })
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
    return exited
  }
  t.teardown(() => stop('SIGKILL'))
  return { url: `http://127.0.0.1:${port}`, port, proc, logs, stop }
}
