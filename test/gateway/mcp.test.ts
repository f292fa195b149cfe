/**
 * MCP at POST /mcp against real actors (Python runtimes + sidecars reporting progress, end actors
 * posting the final status): the official MCP TypeScript SDK client over Streamable HTTP, and a
 * plain `Accept: *\/*` JSON client the way upstream's clients talk.
 */
import t, { type Test } from 'tap'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { LATEST_PROTOCOL_VERSION, type CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import { startMcpWorld } from './mcp-world.js'
import { get } from './support.js'

const TOOLS = `
defaults: { progress: true, timeout: 60 }
routes:
  two: [mcp-a, mcp-b]
tools:
  - name: tag
    description: Tag through two actors
    parameters:
      text: { type: string, required: true, description: what to tag }
      count: { type: integer, default: 1 }
      mode: { type: string, options: [fast, slow], default: fast }
      options:
        type: object
        description: knobs
        properties:
          depth: { type: integer, required: true }
          labels: { type: array, items: { type: string } }
    route: two
  - name: tag-wait
    description: Same pipeline, answers with the final result
    parameters:
      text: { type: string, required: true }
    route: two
    wait: true
  - name: broken
    description: The handler raises
    parameters: {}
    route: [mcp-fail]
    wait: true
`

const world = await startMcpWorld(t, {
  tools: TOOLS,
  actors: [
    { name: 'mcp-a', handler: 'tag' },
    { name: 'mcp-b', handler: 'tag' },
    { name: 'mcp-fail', handler: 'fail' },
  ],
})
const mcpUrl = new URL(`${world.url}/mcp`)

async function sdkClient(t: Test, fetchImpl?: typeof fetch): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name: 'asya-test', version: '1.0.0' })
  const transport = new StreamableHTTPClientTransport(mcpUrl, fetchImpl ? { fetch: fetchImpl } : {})
  await client.connect(transport)
  t.teardown(() => client.close())
  return { client, transport }
}

async function until<T>(fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 50))
  }
}

t.test('SDK client: initialize, tools/list with real JSON-Schema types, tools/call → envelope id, envelope completes', async (t) => {
  const { client, transport } = await sdkClient(t)
  t.same(client.getServerVersion(), { name: 'asya-gateway', version: '0.1.0' })
  t.ok(client.getServerCapabilities()?.tools, 'tools capability')
  t.ok(transport.sessionId, 'Mcp-Session-Id taken from initialize')
  const { tools } = await client.listTools()
  t.same(tools.map((x) => x.name).sort(), ['broken', 'tag', 'tag-wait'])
  const tag = tools.find((x) => x.name === 'tag')
  t.same(tag?.inputSchema, {
    type: 'object',
    properties: {
      text: { type: 'string', description: 'what to tag' },
      count: { type: 'integer', default: 1 },
      mode: { type: 'string', default: 'fast', enum: ['fast', 'slow'] },
      options: {
        type: 'object',
        description: 'knobs',
        properties: { depth: { type: 'integer' }, labels: { type: 'array', items: { type: 'string' } } },
        required: ['depth'],
      },
    },
    required: ['text'],
  })
  const res = (await client.callTool({ name: 'tag', arguments: { text: 'hi', options: { depth: 2 } } })) as CallToolResult
  t.notOk(res.isError)
  const body = JSON.parse((res.content[0] as { text: string }).text) as { envelope_id: string; status_url: string; stream_url: string }
  t.match(body, { envelope_id: String, status_url: `/envelopes/${body.envelope_id}`, stream_url: `/envelopes/${body.envelope_id}/stream` }, 'upstream result shape')
  const done = await until(async () => {
    const r = await get(`${world.url}/envelopes/${body.envelope_id}`)
    return r.json?.status === 'succeeded' ? r.json : undefined
  })
  t.same(done.result.seen, ['mcp-a', 'mcp-b'], 'the envelope went through both actors')
  t.equal(done.result.count, 1, 'default filled in')
})

t.test('SDK client with a progressToken: notifications/progress while the envelope moves, then the final result', async (t) => {
  const { client } = await sdkClient(t)
  const progress: Array<{ progress: number; total?: number; message?: string }> = []
  const res = (await client.callTool({ name: 'tag', arguments: { text: 'progress please', options: { depth: 1 } } }, undefined, { onprogress: (p) => progress.push(p) })) as CallToolResult
  t.notOk(res.isError, 'final result, not an error')
  const result = JSON.parse((res.content[0] as { text: string }).text) as { seen: string[]; text: string }
  t.same(result.seen, ['mcp-a', 'mcp-b'], 'the handler result is the tool result')
  t.same(res.structuredContent, result, 'also as structuredContent')
  t.ok((res._meta as Record<string, unknown>)['asya.sh/envelope_id'], 'envelope id in _meta')
  t.ok(progress.length >= 2, `${progress.length} progress notifications`)
  const values = progress.map((p) => p.progress)
  t.ok(values.every((v, i) => i === 0 || v > (values[i - 1] as number)), `strictly increasing: ${values.join(', ')}`)
  t.equal(values.at(-1), 100, 'ends at 100')
  t.ok(progress.every((p) => p.total === 100))
  // SPEC §11 #16: 100 % only with the final result, never after the first of two actors.
  t.ok(values.slice(0, -1).every((v) => v < 100), 'below 100 until the end')
  t.ok(progress.some((p) => /mcp-a/.test(p.message ?? '')) && progress.some((p) => /mcp-b/.test(p.message ?? '')), 'messages name the actors')
})

t.test('wait: true tool: the final result; a failing handler: isError with the error text', async (t) => {
  const { client } = await sdkClient(t)
  const ok = (await client.callTool({ name: 'tag-wait', arguments: { text: 'w' } })) as CallToolResult
  t.same(JSON.parse((ok.content[0] as { text: string }).text).seen, ['mcp-a', 'mcp-b'])
  const bad = (await client.callTool({ name: 'broken', arguments: {} })) as CallToolResult
  t.equal(bad.isError, true)
  const err = JSON.parse((bad.content[0] as { text: string }).text) as { status: string; error: string; message: string; actor: string }
  t.match(err, { status: 'failed', error: 'processing_error', message: /boom/, actor: 'mcp-fail' }, 'the handler error reaches the agent')
})

t.test('SDK client: unknown tool → JSON-RPC error; bad arguments → isError naming the parameter', async (t) => {
  const { client } = await sdkClient(t)
  await t.rejects(client.callTool({ name: 'nope', arguments: {} }), /Tool nope not found/)
  const res = (await client.callTool({ name: 'tag', arguments: { count: 'x' } })) as CallToolResult
  t.equal(res.isError, true)
  t.match((res.content[0] as { text: string }).text, /text/, 'names the missing parameter')
})

/** A plain JSON-RPC client the way upstream's clients talk: Accept: *\/*, JSON replies. */
async function rpc(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; json: any; text: string }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', accept: '*/*', ...headers }, body: JSON.stringify(body) })
  const text = await res.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, json, text }
}

t.test('plain Accept: */* client: JSON replies, session id from initialize, notifications → 202, tools/list and tools/call', async (t) => {
  const init = await rpc(mcpUrl.href, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'curl', version: '1' } } })
  t.equal(init.status, 200)
  t.match(init.headers.get('content-type'), /application\/json/, 'JSON, not SSE')
  t.equal(init.json.result.protocolVersion, '2024-11-05')
  t.equal(init.json.result.serverInfo.name, 'asya-gateway')
  const session = init.headers.get('mcp-session-id')
  t.ok(session && /^[\x21-\x7e]+$/.test(session), 'visible-ASCII session id')
  const h = { 'mcp-session-id': session as string }
  const note = await rpc(mcpUrl.href, { jsonrpc: '2.0', method: 'notifications/initialized' }, h)
  t.equal(note.status, 202, 'notification → 202')
  t.equal(note.text, '')
  const list = await rpc(mcpUrl.href, { jsonrpc: '2.0', id: 2, method: 'tools/list' }, h)
  t.equal(list.status, 200)
  t.equal(list.json.result.tools.find((x: { name: string }) => x.name === 'tag').inputSchema.properties.options.type, 'object', 'object parameters are objects (SPEC §11 #20)')
  const call = await rpc(mcpUrl.href, { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'tag-wait', arguments: { text: 'json' } } }, h)
  t.equal(call.status, 200)
  t.same(JSON.parse(call.json.result.content[0].text).seen, ['mcp-a', 'mcp-b'], 'final result as JSON')
  const ping = await rpc(mcpUrl.href, { jsonrpc: '2.0', id: 4, method: 'ping' }, h)
  t.same(ping.json, { jsonrpc: '2.0', id: 4, result: {} })
  const batch = await rpc(mcpUrl.href, [{ jsonrpc: '2.0', id: 5, method: 'ping' }, { jsonrpc: '2.0', id: 6, method: 'tools/list' }], h)
  t.same(batch.json.map((m: { id: number }) => m.id).sort(), [5, 6], 'batch answered as a JSON array')
  const noAccept = await fetch(mcpUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'ping' }) })
  t.equal(noAccept.status, 200, 'no Accept header at all (upstream tests) works too')
  const unknown = await rpc(mcpUrl.href, { jsonrpc: '2.0', id: 8, method: 'resources/list' }, h)
  t.equal(unknown.json.error.code, -32601, 'unknown method → JSON-RPC method not found')
})

t.test('protocol versions: 2024-11-05 through the SDK newest negotiated; unknown → newest; bad header → 400', async (t) => {
  for (const v of ['2024-11-05', '2025-03-26', '2025-06-18', LATEST_PROTOCOL_VERSION]) {
    const r = await rpc(mcpUrl.href, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: v, capabilities: {}, clientInfo: { name: 'v', version: '1' } } })
    t.equal(r.json.result.protocolVersion, v, `${v} accepted`)
  }
  const r = await rpc(mcpUrl.href, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '1999-01-01', capabilities: {}, clientInfo: { name: 'v', version: '1' } } })
  t.equal(r.json.result.protocolVersion, LATEST_PROTOCOL_VERSION)
  const bad = await rpc(mcpUrl.href, { jsonrpc: '2.0', id: 2, method: 'ping' }, { 'mcp-protocol-version': '1999-01-01' })
  t.equal(bad.status, 400)
})

t.test('sessions: a forged or foreign session id → 404; GET and DELETE /mcp → 405', async (t) => {
  const r = await rpc(mcpUrl.href, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { 'mcp-session-id': 'eyJ2IjoiMjAyNC0xMS0wNSJ9.forged' })
  t.equal(r.status, 404)
  t.equal(r.json.error.code, -32001)
  for (const method of ['GET', 'DELETE']) {
    const res = await fetch(mcpUrl, { method, headers: { accept: 'text/event-stream' } })
    t.equal(res.status, 405, method)
    t.equal(res.headers.get('allow'), 'POST')
  }
  const metrics = await (await fetch(`${world.url}/metrics`)).text()
  t.match(metrics, /asya_gateway_mcp_requests_total\{method="tools\/list",outcome="unknown_session"\} 1/)
  t.match(metrics, /asya_gateway_mcp_wait_results_total\{status="succeeded"\}/)
})

t.test('content negotiation: SSE only for a tools/call with a progressToken from a client that accepts it', async (t) => {
  const both = { accept: 'application/json, text/event-stream' }
  const list = await rpc(mcpUrl.href, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, both)
  t.match(list.headers.get('content-type'), /application\/json/, 'tools/list: JSON even for an SSE-capable client')
  const call = await rpc(mcpUrl.href, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'tag-wait', arguments: { text: 'sse' }, _meta: { progressToken: 'p1' } } }, both)
  t.match(call.headers.get('content-type'), /text\/event-stream/, 'progress-carrying call: SSE')
  const events = [...call.text.matchAll(/^data: (.+)$/gm)].map((m) => JSON.parse(m[1] as string) as { method?: string; id?: number; params?: { progressToken: string; progress: number } })
  const notes = events.filter((e) => e.method === 'notifications/progress')
  t.ok(notes.length > 0 && notes.every((n) => n.params?.progressToken === 'p1'), `${notes.length} progress notifications with the client's token`)
  t.equal(events.at(-1)?.id, 2, 'then the response, last')
  const json = await rpc(mcpUrl.href, { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'tag-wait', arguments: { text: 'json' }, _meta: { progressToken: 'p2' } } })
  t.match(json.headers.get('content-type'), /application\/json/, 'the same call from an Accept: */* client: JSON, the result only')
  t.same(JSON.parse(json.json.result.content[0].text).seen, ['mcp-a', 'mcp-b'])
})
