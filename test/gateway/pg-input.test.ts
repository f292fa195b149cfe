/**
 * Input PostgreSQL refuses never becomes a 503 (found by the fuzz test): U+0000 in ids, messages,
 * actor names, payloads and results; ids longer than a btree key may be. Ids no envelope can have
 * are 404 (lookups) or 400 (registration); text and JSON are stored with U+FFFD for U+0000.
 */
import t from 'tap'
import { pgJson } from '../../gateway/store/pg-store.js'
import { post, get, startGateway, testDatabase } from './support.js'

t.test('pgJson: U+0000 escapes become U+FFFD; a literal backslash-u0000 text stays', async (t) => {
  t.equal(pgJson({ a: 'x\u0000y' }), '{"a":"x\\ufffdy"}')
  t.equal(pgJson({ a: '\\u0000' }), '{"a":"\\\\u0000"}', 'an escaped backslash followed by u0000 is text, untouched')
  t.equal(pgJson({ a: '\\\u0000' }), '{"a":"\\\\\\ufffd"}')
  t.same(JSON.parse(pgJson([1, 'ok'])), [1, 'ok'])
})

t.test('PostgreSQL store: U+0000 and oversized ids → 4xx or stored with U+FFFD, never 503', async (t) => {
  const g = await startGateway(t, { databaseUrl: await testDatabase(t) })
  await g.transport.ensureQueue('gw-a')
  for (const path of ['/envelopes/%00', '/envelopes/a%00b/stream', '/envelopes/%00/active']) t.equal((await get(`${g.url}${path}`)).status, 404, `GET ${path}`)
  t.equal((await get(`${g.url}/envelopes/${'a'.repeat(300)}`)).status, 414, 'an id past the router\'s 100-character parameter limit: 414')
  t.equal((await post(`${g.url}/envelopes/%00/progress`, { status: 'received' })).status, 404)
  t.equal((await post(`${g.url}/envelopes/%00/final`, { status: 'succeeded' })).status, 404)
  t.equal((await post(`${g.url}/envelopes`, { id: 'a\u0000b' })).status, 400)
  t.equal((await post(`${g.url}/envelopes`, { id: 'b'.repeat(3000) })).status, 400, 'an id longer than a btree key may be')
  t.equal((await post(`${g.url}/envelopes`, { id: 'x', parent_id: '\u0000' })).status, 400)
  t.equal((await post(`${g.url}/envelopes`, { id: 'y', actors: ['a\u0000'] })).status, 201)
  t.equal((await post(`${g.url}/envelopes/y/progress`, { status: 'received', message: 'm\u0000', actors: ['a\u0000'] })).status, 200)
  const call = await post(`${g.url}/tools/call`, { name: 'echo', arguments: { text: 'a\u0000b' } })
  t.equal(call.status, 200)
  t.notOk(call.json.isError, 'the tool call is accepted')
  t.equal((await post(`${g.url}/envelopes/y/final`, { status: 'failed', error: 'e\u0000', current_actor_name: 'n\u0000', result: { k: '\u0000' } })).status, 200)
  const y = (await get(`${g.url}/envelopes/y`)).json
  t.equal(y.status, 'failed')
  t.same(y.result, { k: '\uFFFD' })
  t.match(y.error, /^e\uFFFD/)
})
