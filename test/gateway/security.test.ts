/**
 * Gateway security (issue 21, docs/security.md), real HTTP against a running gateway with
 * ASYA_GATEWAY_SECURITY=on, a real JWKS served by the test: callers need an API key or a JWT
 * (401 with the MCP discovery header otherwise, and nothing created), sidecar endpoints live on
 * the internal listener behind the sidecar token, `final` only with the end actors' token, keys
 * revoked and JWKS keys rotated without a restart, allow-lists, limits.
 */
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { readGatewayConfig } from '../../gateway/config.js'
import { mcpPlugin } from '../../gateway/mcp/plugin.js'
import { isAsyaError } from '../../src/errors.js'
import { request, startSecureGateway, TestIssuer, token, type SecureGateway } from './security-support.js'

const issuer = await new TestIssuer().start(t)
const gw = await startSecureGateway(t, { issuer, plugins: [mcpPlugin()] })
const AUD = 'https://gateway.test/mcp'

async function toolCallsAccepted(g: SecureGateway): Promise<number> {
  const m = await g.gateway.ctx.metrics.toolCalls.get()
  return m.values.filter((v) => v.labels.outcome === 'accepted').reduce((a, v) => a + v.value, 0)
}

async function rejections(g: SecureGateway, reason: string, listener = 'public'): Promise<number> {
  const m = await g.gateway.ctx.metrics.rejections.get()
  return m.values.filter((v) => v.labels.reason === reason && v.labels.listener === listener).reduce((a, v) => a + v.value, 0)
}

async function startEnvelope(g: SecureGateway, key = g.keys.ci): Promise<string> {
  const r = await request(`${g.url}/tools/call`, { token: key, body: { name: 'echo', arguments: { text: 'hi' } } })
  if (r.status !== 200) throw new Error(`tool call: ${r.status} ${r.text}`)
  return JSON.parse(r.json.content[0].text).envelope_id as string
}

t.test('config: security on without its files or any caller source names every problem at once', async (t) => {
  try {
    readGatewayConfig({ ASYA_GATEWAY_SECURITY: 'on', ASYA_GATEWAY_OIDC_AUDIENCE: 'x', ASYA_GATEWAY_OIDC_ALGORITHMS: 'HS256' })
    t.fail('accepted')
  } catch (err) {
    t.ok(isAsyaError(err, 'ASYA_ERR_CONFIG_INVALID'))
    const msg = (err as Error).message
    for (const v of ['ASYA_GATEWAY_SIDECAR_TOKEN_FILE', 'ASYA_GATEWAY_END_ACTOR_TOKEN_FILE', 'ASYA_GATEWAY_OIDC_ISSUER', 'ASYA_GATEWAY_OIDC_ALGORITHMS']) t.match(msg, v, `names ${v}`)
  }
  const off = readGatewayConfig({})
  t.equal(off.security.enabled, false, 'off by default (upstream-compatible)')
  t.equal(off.limits.rateLimit, 0, 'no rate limit with security off')
  t.equal(readGatewayConfig({ ASYA_GATEWAY_SECURITY: 'on', ASYA_GATEWAY_SIDECAR_TOKEN_FILE: 'a', ASYA_GATEWAY_END_ACTOR_TOKEN_FILE: 'b', ASYA_GATEWAY_API_KEYS_FILE: 'c' }).limits.rateLimit, 600, 'rate limit on by default with security on')
})

t.test('callers: no token, wrong token, expired JWT, wrong audience, wrong issuer key → 401 with the MCP discovery header; nothing created', async (t) => {
  const before = await toolCallsAccepted(gw)
  const expired = await issuer.sign({ sub: 'alice', aud: AUD }, { expiresIn: Math.floor(Date.now() / 1000) - 120 })
  const wrongAud = await issuer.sign({ sub: 'alice', aud: 'https://other.example/mcp' })
  const cases: Array<[string, string | undefined, RegExp]> = [
    ['no token', undefined, /no bearer token/],
    ['wrong API key', token(), /unknown or revoked API key/],
    ['expired JWT', expired, /expired/],
    ['wrong audience', wrongAud, /aud/],
    ['garbage JWT', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln', /invalid JWT/],
  ]
  for (const [name, tok, message] of cases) {
    for (const [path, body] of [
      ['/tools/call', { name: 'echo', arguments: { text: 'x' } }],
      ['/mcp', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'x' } } }],
    ] as const) {
      const r = await request(`${gw.url}${path}`, { ...(tok !== undefined ? { token: tok } : {}), body })
      t.equal(r.status, 401, `${name} ${path}: 401`)
      const challenge = r.headers.get('www-authenticate') ?? ''
      t.match(challenge, /^Bearer resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource"/, `${name} ${path}: WWW-Authenticate names the metadata document`)
      if (tok !== undefined) t.match(challenge, /error="invalid_token"/)
      t.equal(r.json?.code, 'ASYA_ERR_UNAUTHORIZED')
      t.match(r.json?.error, message, `${name}: the reason`)
    }
  }
  const read = await request(`${gw.url}/envelopes/whatever`)
  t.equal(read.status, 401, 'GET /envelopes/{id} needs a credential too')
  t.equal((await request(`${gw.url}/envelopes/whatever/stream`)).status, 401, 'and the stream')
  t.equal(await toolCallsAccepted(gw), before, 'nothing was started')
  t.ok((await rejections(gw, 'unauthorized')) >= cases.length * 2)
  // The open routes stay open: probes, scraping, discovery.
  t.equal((await request(`${gw.url}/health`)).status, 200)
  t.equal((await request(`${gw.url}/metrics`)).status, 200)
  const meta = await request(`${gw.url}/.well-known/oauth-protected-resource`)
  t.equal(meta.status, 200)
  t.same(meta.json.authorization_servers, [issuer.url], 'the issuer is the authorization server')
  t.match(meta.json.resource, /\/mcp$/)
  t.same(meta.json.bearer_methods_supported, ['header'])
  t.same((await request(`${gw.url}/.well-known/oauth-protected-resource/mcp`)).json, meta.json, 'also at the path-suffixed location')
})

t.test('callers: a valid API key and a valid JWT call tools, read envelopes and stream', async (t) => {
  const id = await startEnvelope(gw)
  t.equal((await request(`${gw.url}/envelopes/${id}`, { token: gw.keys.ci })).status, 200)
  const jwt = await issuer.sign({ sub: 'alice', aud: AUD })
  const r = await request(`${gw.url}/tools/call`, { token: jwt, body: { name: 'echo', arguments: { text: 'jwt' } } })
  t.equal(r.status, 200, 'JWT accepted')
  const list = await request(`${gw.url}/mcp`, { token: jwt, body: { jsonrpc: '2.0', id: 1, method: 'tools/list' }, headers: { accept: 'application/json' } })
  t.equal(list.status, 200)
  t.ok(list.json.result.tools.length >= 3, 'MCP over JWT')
  t.match(r.headers.get('x-content-type-options'), 'nosniff', 'security headers')
  t.equal(r.headers.get('access-control-allow-origin'), null, 'no CORS unless configured')
})

t.test('allow-list: a key limited to [echo] cannot call or list another tool', async (t) => {
  const r = await request(`${gw.url}/tools/call`, { token: gw.keys.echoOnly, body: { name: 'quick', arguments: {} } })
  t.equal(r.status, 403)
  t.equal(r.json.code, 'ASYA_ERR_FORBIDDEN')
  t.equal(r.json.reason, 'forbidden_tool')
  t.equal((await request(`${gw.url}/tools/call`, { token: gw.keys.echoOnly, body: { name: 'echo', arguments: { text: 'ok' } } })).status, 200)
  const list = await request(`${gw.url}/mcp`, { token: gw.keys.echoOnly, body: { jsonrpc: '2.0', id: 1, method: 'tools/list' }, headers: { accept: 'application/json' } })
  t.same(list.json.result.tools.map((x: { name: string }) => x.name), ['echo'], 'tools/list shows the allowed tools only')
  const call = await request(`${gw.url}/mcp`, { token: gw.keys.echoOnly, body: { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'quick', arguments: {} } }, headers: { accept: 'application/json' } })
  t.match(call.json.error?.message, /allow-list/, 'MCP tools/call refused')
  t.ok((await rejections(gw, 'forbidden_tool')) >= 2)
})

t.test('API keys: revoked and added by rewriting the file, no restart', async (t) => {
  const fresh = token()
  t.equal((await request(`${gw.url}/envelopes/x`, { token: fresh })).status, 401)
  gw.writeKeys([{ name: 'ci', key: gw.keys.ci }, { name: 'echo-only', key: gw.keys.echoOnly, tools: ['echo'] }, { name: 'new', key: fresh }])
  t.equal((await request(`${gw.url}/envelopes/x`, { token: fresh })).status, 404, 'the new key works (404: no such envelope)')
  gw.writeKeys([{ name: 'ci', key: gw.keys.ci }, { name: 'echo-only', key: gw.keys.echoOnly, tools: ['echo'] }])
  t.equal((await request(`${gw.url}/envelopes/x`, { token: fresh })).status, 401, 'revoked')
  writeFileSync(join(gw.dir, 'api-keys.yaml'), 'keys: [{ name: broken }]\n')
  t.equal((await request(`${gw.url}/envelopes/x`, { token: gw.keys.ci })).status, 404, 'an invalid new file is refused; the previous keys stay')
  gw.writeKeys([{ name: 'ci', key: gw.keys.ci }, { name: 'echo-only', key: gw.keys.echoOnly, tools: ['echo'] }])
})

t.test('JWKS rotation at the issuer is picked up; tokens of the retired key are refused', async (t) => {
  const before = await issuer.sign({ sub: 'bob', aud: AUD })
  t.equal((await request(`${gw.url}/envelopes/x`, { token: before })).status, 404, 'current key')
  const old = await issuer.rotate()
  const after = await issuer.sign({ sub: 'bob', aud: AUD })
  const fetches = issuer.jwksFetches
  t.equal((await request(`${gw.url}/envelopes/x`, { token: after })).status, 404, 'a token of the new key (unknown kid) makes the gateway re-fetch the JWKS')
  t.ok(issuer.jwksFetches > fetches, 'the JWKS was fetched again')
  const forged = await issuer.sign({ sub: 'bob', aud: AUD }, { ...(old ? { key: old } : {}) })
  t.equal((await request(`${gw.url}/envelopes/x`, { token: forged })).status, 401, 'the retired key no longer verifies')
})

t.test('sidecar endpoints: not on the public listener; internal listener needs the token; final only from end actors; envelope unchanged', async (t) => {
  const id = await startEnvelope(gw)
  const forged = { id, status: 'succeeded', result: { forged: true } }
  const statusOf = async (): Promise<string> => (await request(`${gw.url}/envelopes/${id}`, { token: gw.keys.ci })).json.status
  const start = await statusOf()
  // Public listener: even an authenticated caller cannot reach them.
  for (const path of [`/envelopes/${id}/final`, `/envelopes/${id}/progress`, '/envelopes/progress', '/envelopes']) {
    t.equal((await request(`${gw.url}${path}`, { token: gw.keys.ci, body: forged })).status, 404, `public ${path}: no such route`)
    t.equal((await request(`${gw.url}${path}`, { body: forged })).status, 401, `public ${path} without a token: 401`)
  }
  // Internal listener.
  const noToken = await request(`${gw.internalUrl}/envelopes/${id}/final`, { body: forged })
  t.equal(noToken.status, 401)
  t.equal(noToken.json.code, 'ASYA_ERR_UNAUTHORIZED')
  t.equal((await request(`${gw.internalUrl}/envelopes/${id}/final`, { token: token(), body: forged })).status, 401, 'wrong token')
  t.equal((await request(`${gw.internalUrl}/envelopes/${id}/final`, { token: gw.keys.ci, body: forged })).status, 401, 'a caller API key is not a sidecar token')
  const sidecar = await request(`${gw.internalUrl}/envelopes/${id}/final`, { token: gw.sidecarToken, body: forged })
  t.equal(sidecar.status, 403, 'the sidecar token cannot post final')
  t.equal(sidecar.json.reason, 'forbidden_final')
  t.equal(await statusOf(), start, 'envelope unchanged')
  t.equal((await request(`${gw.internalUrl}/envelopes/${id}/progress`, { body: { status: 'received', current_actor_idx: 0, actors: ['gw-a'] } })).status, 401, 'progress without the token')
  t.equal((await request(`${gw.internalUrl}/envelopes/${id}/progress`, { token: gw.sidecarToken, body: { status: 'received', current_actor_idx: 0, actors: ['gw-a', 'gw-b', 'gw-c'] } })).status, 200, 'progress with it')
  t.equal((await request(`${gw.internalUrl}/envelopes/progress`, { body: { reports: [] } })).status, 401, 'a progress batch without the token')
  const batch = await request(`${gw.internalUrl}/envelopes/progress`, { token: gw.sidecarToken, body: { reports: [{ id, status: 'processing', current_actor_idx: 0 }] } })
  t.same([batch.status, batch.json.results?.[0]?.code], [200, 200], 'a progress batch with it')
  t.equal((await request(`${gw.internalUrl}/health`)).status, 200, 'probe open')
  // Unknown and already-final envelopes: nothing happens.
  t.equal((await request(`${gw.internalUrl}/envelopes/nope/final`, { token: gw.endActorToken, body: forged })).status, 404, 'unknown envelope')
  t.equal((await request(`${gw.internalUrl}/envelopes/${id}/final`, { token: gw.endActorToken, body: { id, status: 'succeeded', result: { n: 1 } } })).status, 200, 'the end actor token posts final')
  const late = await request(`${gw.internalUrl}/envelopes/${id}/final`, { token: gw.endActorToken, body: { id, status: 'failed', error: 'late' } })
  t.equal(late.json.status, 'ignored', 'a second final changes nothing')
  const rec = (await request(`${gw.url}/envelopes/${id}`, { token: gw.keys.ci })).json
  t.equal(rec.status, 'succeeded')
  t.same(rec.result, { n: 1 })
  t.ok((await rejections(gw, 'forbidden_final', 'internal')) >= 1)
})

t.test('limits: tool arguments and report bodies too large → 413 naming the limit', async (t) => {
  const g = await startSecureGateway(t, { env: { ASYA_GATEWAY_MAX_ARGUMENTS_SIZE: '1000', ASYA_GATEWAY_REPORT_BODY_LIMIT: '2048' }, plugins: [mcpPlugin()] })
  const big = await request(`${g.url}/tools/call`, { token: g.keys.ci, body: { name: 'echo', arguments: { text: 'x'.repeat(2000) } } })
  t.equal(big.status, 413)
  t.same(big.json, { error: 'tool arguments larger than 1000 bytes', code: 'ASYA_ERR_LIMIT_EXCEEDED', reason: 'arguments_too_large', limit: 'ASYA_GATEWAY_MAX_ARGUMENTS_SIZE' })
  const mcp = await request(`${g.url}/mcp`, { token: g.keys.ci, body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'x'.repeat(2000) } } }, headers: { accept: 'application/json' } })
  t.match(mcp.json.error?.message, /ASYA_GATEWAY_MAX_ARGUMENTS_SIZE/, 'MCP: a JSON-RPC error naming the limit')
  const report = await request(`${g.internalUrl}/envelopes/x/progress`, { token: g.sidecarToken, body: { status: 'received', message: 'x'.repeat(4000) } })
  t.equal(report.status, 413)
  t.equal(report.json.limit, 'ASYA_GATEWAY_REPORT_BODY_LIMIT')
  t.equal(await rejections(g, 'arguments_too_large'), 2)
  t.equal(await rejections(g, 'body_too_large', 'internal'), 1)
})

t.test('limits: per-caller rate limit hit (429 naming it, other callers unaffected) and recovered', async (t) => {
  const g = await startSecureGateway(t, { env: { ASYA_GATEWAY_RATE_LIMIT: '3', ASYA_GATEWAY_RATE_LIMIT_WINDOW: '500ms' } })
  for (let i = 0; i < 3; i++) t.equal((await request(`${g.url}/envelopes/x`, { token: g.keys.ci })).status, 404, `request ${i + 1} within the limit`)
  const r = await request(`${g.url}/envelopes/x`, { token: g.keys.ci })
  t.equal(r.status, 429)
  t.equal(r.json.limit, 'ASYA_GATEWAY_RATE_LIMIT')
  t.equal(r.json.code, 'ASYA_ERR_LIMIT_EXCEEDED')
  t.ok(r.headers.get('retry-after'), 'Retry-After')
  t.equal((await request(`${g.url}/envelopes/x`, { token: g.keys.echoOnly })).status, 404, 'another caller has its own budget')
  t.equal((await request(`${g.url}/health`)).status, 200, 'probes are never limited')
  // Recovery: once the window passes, the caller is served again.
  let status = 429
  for (let i = 0; i < 200 && status === 429; i++) {
    await new Promise((res) => setTimeout(res, 50))
    status = (await request(`${g.url}/envelopes/x`, { token: g.keys.ci })).status
  }
  t.equal(status, 404, 'recovered after the window')
  t.ok((await rejections(g, 'rate_limited')) >= 1)
})

t.test('limits: concurrent SSE cap per caller hit and recovered', async (t) => {
  const g = await startSecureGateway(t, { env: { ASYA_GATEWAY_MAX_SSE_PER_CALLER: '2' } })
  const id = await startEnvelope(g)
  const open = async (key: string): Promise<{ status: number; body: any; abort: () => void }> => {
    const ac = new AbortController()
    const res = await fetch(`${g.url}/envelopes/${id}/stream`, { headers: { authorization: `Bearer ${key}` }, signal: ac.signal })
    const body = res.headers.get('content-type')?.startsWith('application/json') ? await res.json() : undefined
    return { status: res.status, body, abort: () => ac.abort() }
  }
  const a = await open(g.keys.ci)
  const b = await open(g.keys.ci)
  t.equal(a.status, 200)
  t.equal(b.status, 200)
  const c = await open(g.keys.ci)
  t.equal(c.status, 429, 'third stream of the same caller refused')
  t.equal(c.body.limit, 'ASYA_GATEWAY_MAX_SSE_PER_CALLER')
  const other = await open(g.keys.echoOnly)
  t.equal(other.status, 200, 'another caller is not affected')
  other.abort()
  a.abort()
  let again = await open(g.keys.ci)
  for (let i = 0; i < 100 && again.status === 429; i++) {
    await new Promise((res) => setTimeout(res, 20))
    again = await open(g.keys.ci)
  }
  t.equal(again.status, 200, 'a slot is free again once a stream closed')
  again.abort()
  b.abort()
  t.ok((await rejections(g, 'sse_cap')) >= 1)
})

t.test('CORS: only configured origins get CORS headers; preflight answered without a credential', async (t) => {
  const g = await startSecureGateway(t, { env: { ASYA_GATEWAY_CORS_ORIGINS: 'https://app.example.com' } })
  const pre = await request(`${g.url}/tools/call`, { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' } })
  t.equal(pre.status, 204)
  t.equal(pre.headers.get('access-control-allow-origin'), 'https://app.example.com')
  t.match(pre.headers.get('access-control-allow-headers'), /authorization/)
  const evil = await request(`${g.url}/envelopes/x`, { token: g.keys.ci, headers: { origin: 'https://evil.example' } })
  t.equal(evil.headers.get('access-control-allow-origin'), null, 'other origins get nothing')
})

t.test('request timeout: a client that never finishes its body gets a JSON 408 naming the limit', async (t) => {
  const g = await startSecureGateway(t, { env: { ASYA_GATEWAY_REQUEST_TIMEOUT: '400ms' } })
  const { connect } = await import('node:net')
  const port = Number(new URL(g.url).port)
  const answer = await new Promise<string>((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(`POST /tools/call HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${g.keys.ci}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"na`))
    let data = ''
    s.on('data', (d) => (data += d.toString()))
    s.on('close', () => resolve(data))
    s.on('error', reject)
  })
  t.match(answer, /^HTTP\/1\.1 408/)
  t.match(answer, /"limit":"ASYA_GATEWAY_REQUEST_TIMEOUT"/)
  t.equal(await rejections(g, 'request_timeout'), 1)
})

t.test('JSON depth: bodies nested deeper than ASYA_GATEWAY_MAX_JSON_DEPTH → 400 naming it; brackets inside strings do not count', async (t) => {
  const { jsonDepthExceeds } = await import('../../gateway/gateway.js')
  const deep = (n: number): string => '['.repeat(n) + ']'.repeat(n)
  t.equal(jsonDepthExceeds(Buffer.from(deep(256)), 256), false)
  t.equal(jsonDepthExceeds(Buffer.from(deep(257)), 256), true)
  t.equal(jsonDepthExceeds(Buffer.from(JSON.stringify({ text: '['.repeat(5000) + '\\"[' })), 256), false, 'inside a string (with escapes)')
  const r = await request(`${gw.url}/tools/call`, { token: gw.keys.ci, body: `{"name":"echo","arguments":{"text":"x","n":${deep(5000)}}}` })
  t.equal(r.status, 400)
  t.equal(r.json.limit, 'ASYA_GATEWAY_MAX_JSON_DEPTH')
  t.equal((await request(`${gw.url}/mcp`, { token: gw.keys.ci, body: deep(5000) })).json.reason, 'json_too_deep', 'MCP too (it overflowed the SDK before)')
})

t.test('HEAD on a running envelope\'s stream answers at once (it hung: found by the fuzz)', async (t) => {
  const id = await startEnvelope(gw)
  const r = await fetch(`${gw.url}/envelopes/${id}/stream`, { method: 'HEAD', headers: { authorization: `Bearer ${gw.keys.ci}` }, signal: AbortSignal.timeout(10_000) })
  t.equal(r.status, 200)
  t.match(r.headers.get('content-type'), /^text\/event-stream/)
})

t.test('MCP SDK client: discovers the issuer from the 401 as the MCP authorization spec says, and works with an API key header', async (t) => {
  const { extractWWWAuthenticateParams, discoverOAuthProtectedResourceMetadata } = await import('@modelcontextprotocol/sdk/client/auth.js')
  const { Client } = await import('@modelcontextprotocol/sdk/client/index.js')
  const { StreamableHTTPClientTransport } = await import('@modelcontextprotocol/sdk/client/streamableHttp.js')
  const res = await fetch(`${gw.url}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }) })
  t.equal(res.status, 401)
  const params = extractWWWAuthenticateParams(res)
  t.equal(params.resourceMetadataUrl?.pathname, '/.well-known/oauth-protected-resource', 'the SDK finds resource_metadata')
  const meta = await discoverOAuthProtectedResourceMetadata(`${gw.url}/mcp`, { resourceMetadataUrl: params.resourceMetadataUrl as URL })
  t.same(meta.authorization_servers, [issuer.url], 'and the authorization server in the document (schema-validated by the SDK)')
  t.equal(meta.resource, `${gw.url}/mcp`)

  const anonymous = new Client({ name: 'anon', version: '1' })
  await t.rejects(anonymous.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`))), 'without a credential the SDK client cannot connect')
  const client = new Client({ name: 'keyed', version: '1' })
  await client.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${gw.keys.echoOnly}` } } }))
  const { tools } = await client.listTools()
  t.same(tools.map((x) => x.name), ['echo'], 'with an API key header: the allowed tools')
  await client.close()
})
