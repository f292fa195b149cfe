/**
 * Fuzz: 10,000 malformed requests over real HTTP across every endpoint of both listeners (security
 * on) and of the upstream-compatible single listener (security off; memory and PostgreSQL stores): random methods, paths, ids,
 * credentials (none, garbage, JWT-shaped garbage, valid keys and tokens), content types and bodies
 * (random bytes, wrong-typed fields, deep nesting, oversized), plus raw garbage on the socket.
 * Expected: 0 crashes, 0 5xx, and the gateway still serves afterwards. Seeded: ASYA_FUZZ_SEED
 * reproduces a run.
 */
import t from 'tap'
import { connect } from 'node:net'
import { mcpPlugin } from '../../gateway/mcp/plugin.js'
import { startSecureGateway, request } from './security-support.js'
import { startGateway, testDatabase } from './support.js'

const seed = Number(process.env.ASYA_FUZZ_SEED ?? Date.now() % 1_000_000)
t.comment(`fuzz seed ${seed} (ASYA_FUZZ_SEED=${seed} reproduces it)`)
let state = seed >>> 0
function rnd(): number {
  // mulberry32
  state = (state + 0x6d2b79f5) >>> 0
  let x = state
  x = Math.imul(x ^ (x >>> 15), x | 1)
  x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
  return ((x ^ (x >>> 14)) >>> 0) / 4294967296
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T
const chance = (p: number): boolean => rnd() < p

const secure = await startSecureGateway(t, { plugins: [mcpPlugin()], env: { ASYA_GATEWAY_RATE_LIMIT: '0', ASYA_GATEWAY_REPORT_BODY_LIMIT: '4096', ASYA_GATEWAY_MAX_ARGUMENTS_SIZE: '8192', ASYA_GATEWAY_BODY_LIMIT: '65536' } })
const open = await startGateway(t, { plugins: [mcpPlugin()], env: { ASYA_GATEWAY_BODY_LIMIT: '65536' } })
await open.transport.ensureQueue('gw-a')
// The production store: PostgreSQL refuses some input (U+0000, oversized index keys) the memory store takes.
const pgOpen = await startGateway(t, { plugins: [mcpPlugin()], databaseUrl: await testDatabase(t), env: { ASYA_GATEWAY_BODY_LIMIT: '65536' } })
await pgOpen.transport.ensureQueue('gw-a')
const seeded = JSON.parse((await request(`${secure.url}/tools/call`, { token: secure.keys.ci, body: { name: 'echo', arguments: { text: 'seed' } } })).json.content[0].text).envelope_id as string

function randomString(max: number): string {
  const n = Math.floor(rnd() * max)
  let s = ''
  for (let i = 0; i < n; i++) s += String.fromCharCode(chance(0.9) ? 32 + Math.floor(rnd() * 95) : chance(0.2) ? 0 : Math.floor(rnd() * 0xd7ff))
  return s
}
function randomJson(depth: number): unknown {
  if (depth <= 0) return pick([null, true, 1.5, -1, 2 ** 60, 'x', '', '\u0000'])
  switch (Math.floor(rnd() * 7)) {
    case 0: return randomString(40)
    case 1: return Math.floor(rnd() * 1e6) * (chance(0.5) ? -1 : 1)
    case 2: return Array.from({ length: Math.floor(rnd() * 4) }, () => randomJson(depth - 1))
    case 3: return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 4) }, () => [pick(['name', 'arguments', 'status', 'id', 'actors', 'current_actor_idx', 'current', 'parent_id', 'message', 'result', 'error', 'error_details', 'jsonrpc', 'method', 'params', '__proto__', 'constructor', randomString(8)]), randomJson(depth - 1)]))
    case 4: return null
    case 5: return chance(0.5)
    default: return pick([{}, [], '', 0])
  }
}
function nested(depth: number): string {
  return chance(0.5) ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)
}
function body(): string | Blob | undefined {
  switch (Math.floor(rnd() * 12)) {
    case 0: return undefined
    case 1: return new Blob([Uint8Array.from({ length: Math.floor(rnd() * 200) }, () => Math.floor(rnd() * 256))])
    case 2: return randomString(200)
    case 3: return nested(1 + Math.floor(rnd() * 5000))
    case 4: return JSON.stringify({ name: pick(['echo', 'quick', 'nowhere', 'nope', '']), arguments: randomJson(3) })
    case 5: return JSON.stringify({ status: pick(['received', 'processing', 'completed', 'succeeded', 'failed', 'x', 3]), current_actor_idx: pick([0, 1, -1, 1.5, 'x', 1e300, null]), actors: randomJson(2), message: randomJson(1), id: pick([seeded, 'x']), result: randomJson(3) })
    case 6: return JSON.stringify({ jsonrpc: '2.0', id: pick([1, 'a', null, {}]), method: pick(['initialize', 'tools/list', 'tools/call', 'ping', 'notifications/initialized', 'x']), params: randomJson(3) })
    case 7: return JSON.stringify([randomJson(2), randomJson(2)])
    case 8: return 'x'.repeat(pick([5000, 10_000, 70_000]))
    case 9: return JSON.stringify({ name: 'echo', arguments: { text: 'y'.repeat(pick([100, 9000, 70_000])) } })
    case 10: return JSON.stringify({ id: pick([seeded, `${seeded}-0`, 'x', '', 'n\u0000ul', 'k'.repeat(3000), randomString(20)]), parent_id: randomJson(1), actors: randomJson(2), current: randomJson(1) })
    default: return JSON.stringify(randomJson(4))
  }
}
function id(): string {
  return pick([seeded, `${seeded}-1`, 'x', '%00', `a%00b`, 'b'.repeat(300), '%zz', '..', '%2e%2e', 'a'.repeat(600), encodeURIComponent(randomString(30)), '', '%F0%9F%98%80', "'; drop table envelopes; --"])
}
const PATHS = [
  () => '/health', () => '/metrics', () => '/mcp', () => '/tools/call', () => `/envelopes/${id()}`, () => `/envelopes/${id()}/stream`,
  () => `/envelopes/${id()}/active`, () => `/envelopes/${id()}/progress`, () => `/envelopes/${id()}/final`, () => '/envelopes',
  () => '/.well-known/oauth-protected-resource', () => '/.well-known/oauth-protected-resource/mcp', () => `/${encodeURIComponent(randomString(20))}`, () => `/envelopes/${id()}/${id()}`, () => '/mcp?x=%zz',
]
function auth(): string | undefined {
  return pick([
    undefined, 'Bearer', 'Bearer ', `Bearer ${randomString(40).replace(/[^\x21-\x7e]/g, 'a')}`, `Bearer ${secure.keys.ci}`, `Bearer ${secure.keys.echoOnly}`,
    `Bearer ${secure.sidecarToken}`, `Bearer ${secure.endActorToken}`, 'Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln', 'Bearer a.b.c', 'Bearer ...', 'Basic dXNlcjpwYXNz',
    `Bearer ${'A'.repeat(8000)}`, `bearer   ${secure.keys.ci}`,
  ])
}

const TARGETS = [secure.url, secure.internalUrl, open.url, pgOpen.url]
const TOTAL = 10_000
const RAW = 300
let sent = 0
const statuses = new Map<number, number>()
const fivexx: string[] = []
const unanswered: string[] = []

async function one(): Promise<void> {
  const target = pick(TARGETS)
  const path = pick(PATHS)()
  const method = pick(['GET', 'POST', 'POST', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'])
  const headers: Record<string, string> = {}
  const a = auth()
  if (a !== undefined) headers.authorization = a
  if (chance(0.7)) headers['content-type'] = pick(['application/json', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', '', 'application/json; charset=latin1'])
  if (chance(0.3)) headers.accept = pick(['*/*', 'application/json', 'text/event-stream', 'application/json, text/event-stream', 'x/y'])
  if (chance(0.1)) headers['mcp-session-id'] = randomString(50).replace(/[^\x21-\x7e]/g, 'b')
  if (chance(0.05)) headers.origin = 'https://evil.example'
  const b = method === 'GET' || method === 'HEAD' ? undefined : body()
  const ac = new AbortController()
  // A request the gateway never answers is a failure too (not a hang of the whole test).
  const hung = setTimeout(() => ac.abort(new Error('no answer')), 20_000)
  let res: Response
  try {
    res = await fetch(`${target}${path}`, { method, headers, ...(b !== undefined ? { body: b } : {}), signal: ac.signal })
  } catch (err) {
    clearTimeout(hung)
    if (ac.signal.aborted) {
      sent++
      unanswered.push(`${method} ${path.slice(0, 80)} auth=${(a ?? '-').slice(0, 20)} body=${typeof b === 'string' ? b.slice(0, 80) : b ? 'bytes' : '-'}`)
    }
    return // otherwise a request fetch itself refuses to send (bad header value): not counted
  }
  clearTimeout(hung)
  sent++
  statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
  if (res.status >= 500) fivexx.push(`${res.status} ${method} ${target === secure.internalUrl ? 'internal' : target === open.url ? 'open' : target === pgOpen.url ? 'open-pg' : 'public'}${path.slice(0, 80)} auth=${(a ?? '-').slice(0, 20)} body=${typeof b === 'string' ? b.slice(0, 80) : b ? 'bytes' : '-'} → ${(await res.text()).slice(0, 120)}`)
  // Streams stay open: read what is there and go.
  if (res.headers.get('content-type')?.startsWith('text/event-stream')) ac.abort()
  else await res.arrayBuffer().catch(() => undefined)
}

function raw(port: number): Promise<number> {
  const garbage = pick([
    'GARBAGE\r\n\r\n', 'GET / HTTP/9.9\r\n\r\n', 'POST /tools/call HTTP/1.1\r\nContent-Length: -1\r\n\r\n', 'GET /health HTTP/1.1\r\nHost: x\r\nX: ' + 'a'.repeat(20_000) + '\r\n\r\n',
    'POST /envelopes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 'GET /\x00 HTTP/1.1\r\n\r\n', `${randomString(100)}\r\n\r\n`, 'POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello',
  ])
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.end(garbage))
    s.setTimeout(20_000, () => s.destroy())
    let data = ''
    s.on('data', (d) => (data += d.toString('latin1')))
    s.on('error', () => undefined)
    s.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0)))
  })
}

t.test(`${TOTAL} malformed requests → 0 crashes, 0 5xx`, async (t) => {
  const workers = Array.from({ length: 16 }, async () => {
    while (sent < TOTAL - RAW) await one()
  })
  await Promise.all(workers)
  for (let i = 0; i < RAW; i++) {
    const status = await raw(Number(new URL(pick(TARGETS)).port))
    sent++
    statuses.set(status, (statuses.get(status) ?? 0) + 1)
    if (status >= 500) fivexx.push(`${status} raw`)
  }
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`)
  t.ok(sent >= TOTAL, `${sent} requests`)
  t.same(fivexx.slice(0, 20), [], `0 5xx (got ${fivexx.length})`)
  t.same(unanswered.slice(0, 20), [], `every request answered (unanswered: ${unanswered.length})`)
  t.ok(statuses.size > 5, 'the fuzz reached many outcomes')
  for (const u of [secure.url, secure.internalUrl, open.url, pgOpen.url]) t.equal((await request(`${u}/health`)).status, 200, `${u} still serves`)
  t.equal((await request(`${secure.url}/envelopes/${seeded}`, { token: secure.keys.ci })).status, 200, 'and still answers callers')
})
