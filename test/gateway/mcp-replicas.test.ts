/**
 * Two gateway processes (`gateway/main.ts`, as deployed: PostgreSQL store, RabbitMQ) sharing one
 * MCP session: `initialize` on one, everything else on the other, with the official SDK client
 * switching replica on every request and with a plain JSON client. A third process with another
 * key refuses the session (404), as MCP wants for a session it does not know.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import { RABBITMQ_URL, rabbitTransport, testExchange } from '../support/rabbitmq.js'
import { rand } from '../support/actor-harness.js'
import { startGateway, testDatabase } from './support.js'
import { mcpPlugin } from '../../gateway/mcp/plugin.js'

// Two gateway processes start through the TypeScript loader: minutes on a loaded 2-core machine.
t.setTimeout(480_000)
const exchange = testExchange('asya-mcp-rep')
const actor = `mcp-rep-${rand()}`
const dir = mkdtempSync(join(tmpdir(), 'asya-mcp-rep-'))
const routes = join(dir, 'routes.yaml')
writeFileSync(routes, `tools:\n  - name: work\n    description: one actor\n    parameters:\n      n: { type: integer, required: true }\n    route: [${actor}]\n`)
const broker = rabbitTransport({ exchange })
await broker.connect()
await broker.ensureQueue(actor)
const databaseUrl = await testDatabase(t)
const children: ChildProcess[] = []
// A crash of this file must not leave gateways running.
process.once('exit', () => children.forEach((c) => c.kill('SIGKILL')))
t.teardown(async () => {
  for (const c of children) c.kill('SIGTERM')
  await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))))
  await broker.deleteQueue(actor).catch(() => undefined)
  await broker.close()
  rmSync(dir, { recursive: true, force: true })
})

async function gatewayProcess(secret: string): Promise<string> {
  const child = spawn(process.execPath, ['--import', './scripts/register-ts.mjs', 'gateway/main.ts'], {
    env: {
      PATH: process.env.PATH ?? '',
      ASYA_GATEWAY_PORT: '0',
      ASYA_GATEWAY_HOST: '127.0.0.1',
      ASYA_DATABASE_URL: databaseUrl,
      ASYA_CONFIG_PATH: routes,
      ASYA_TRANSPORT: 'rabbitmq',
      ASYA_RABBITMQ_URL: RABBITMQ_URL,
      ASYA_RABBITMQ_EXCHANGE: exchange,
      ASYA_MCP_SESSION_SECRET: secret,
      ASYA_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.push(child)
  let out = ''
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()))
  return new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /"port":(\d+)[^\n]*gateway listening/.exec(out)
      if (m) resolve(`http://127.0.0.1:${m[1]}`)
    })
    child.once('exit', (code) => reject(new Error(`gateway exited ${String(code)}: ${out}`)))
  })
}

const shared = 's'.repeat(8) + rand() + rand()
const [a, b] = await Promise.all([gatewayProcess(shared), gatewayProcess(shared)])
// A third replica on the same database with another key (in-process: a third spawn costs CI time).
const other = (await startGateway(t, { databaseUrl, plugins: [mcpPlugin()], env: { ASYA_MCP_SESSION_SECRET: `other-${rand()}-${rand()}` } })).url

t.test('the SDK client, switching replica on every request, lists and calls tools in one session', async (t) => {
  const hits: string[] = []
  let n = 0
  // Initialize goes to A; every later request alternates, as a load balancer may send it.
  const roundRobin: typeof fetch = (input, init) => {
    const base = n++ % 2 === 0 ? (a as string) : (b as string)
    hits.push(base)
    const url = new URL(String(input instanceof Request ? input.url : input))
    return fetch(`${base}${url.pathname}`, init)
  }
  const client = new Client({ name: 'replicas', version: '1' })
  const transport = new StreamableHTTPClientTransport(new URL(`${a}/mcp`), { fetch: roundRobin })
  await client.connect(transport)
  t.teardown(() => client.close())
  t.ok(transport.sessionId, 'session from initialize')
  const { tools } = await client.listTools()
  t.same(tools.map((x) => x.name), ['work'])
  const res = (await client.callTool({ name: 'work', arguments: { n: 3 } })) as CallToolResult
  t.notOk(res.isError)
  const { envelope_id } = JSON.parse((res.content[0] as { text: string }).text) as { envelope_id: string }
  t.ok(new Set(hits).size === 2, `requests reached both replicas (${hits.length} requests)`)
  for (const base of [a, b]) {
    const env = (await (await fetch(`${base}/envelopes/${envelope_id}`)).json()) as { status: string; payload: { n: number } }
    t.match(env, { status: 'running', payload: { n: 3 } }, `the envelope is visible on ${base === a ? 'A' : 'B'} (shared PostgreSQL)`)
  }
})

t.test('plain JSON client: session from A accepted by B, refused (404) by a replica with another key', async (t) => {
  const post = (base: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${base}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: '*/*', ...headers }, body: JSON.stringify(body) })
  const init = await post(a as string, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'json', version: '1' } } })
  const session = init.headers.get('mcp-session-id') as string
  t.ok(session)
  const onB = await post(b as string, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'work', arguments: { n: 1 } } }, { 'mcp-session-id': session })
  t.equal(onB.status, 200)
  const body = (await onB.json()) as { result: CallToolResult }
  t.match(JSON.parse((body.result.content[0] as { text: string }).text), { envelope_id: String }, 'B took the call in A\'s session')
  const onOther = await post(other as string, { jsonrpc: '2.0', id: 3, method: 'tools/list' }, { 'mcp-session-id': session })
  t.equal(onOther.status, 404, 'another key: session not found')
  t.equal(((await onOther.json()) as { error: { code: number } }).error.code, -32001)
})
