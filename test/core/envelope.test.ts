import t from 'tap'
import { parseEnvelope, envelopeProblem } from '../../src/envelope.js'
import { queueName, dlqName, isValidActorName } from '../../src/names.js'
import { isAsyaError } from '../../src/errors.js'

const valid = { id: 'e1', route: { actors: ['a', 'b'], current: 0 }, payload: null }

t.test('accepts a minimal envelope with a null payload', async (t) => {
  const env = parseEnvelope(Buffer.from(JSON.stringify(valid)))
  t.equal(env.id, 'e1')
  t.equal(env.payload, null)
})

t.test('preserves unknown top-level fields and headers', async (t) => {
  const env = parseEnvelope(JSON.stringify({ ...valid, headers: { trace: 'x' }, future: { a: 1 } }))
  t.same(env.headers, { trace: 'x' })
  t.same(env['future'], { a: 1 })
})

t.test('rejects non-JSON and invalid UTF-8 as parse_error', async (t) => {
  for (const body of [Buffer.from('not json'), Buffer.from([0xff, 0xfe, 0x7b]), Buffer.alloc(0)]) {
    try {
      parseEnvelope(body)
      t.fail('should throw')
    } catch (err) {
      t.ok(isAsyaError(err, 'ASYA_ERR_ENVELOPE_PARSE'))
      t.equal((err as { details: { reason: string } }).details.reason, 'parse_error')
    }
  }
})

t.test('names the broken rule for invalid envelopes', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [[], /JSON object/],
    [{ ...valid, id: '' }, /"id"/],
    [{ ...valid, id: 5 }, /"id"/],
    [{ ...valid, route: { actors: [], current: 0 } }, /route.actors/],
    [{ ...valid, route: { actors: ['a'], current: -1 } }, /route.current/],
    [{ ...valid, route: { actors: ['a'], current: '0' } }, /route.current/],
    [{ ...valid, route: { actors: ['a'], current: 0.5 } }, /route.current/],
    [{ ...valid, route: { actors: ['happy-end'], current: 0 } }, /end actor/],
    [{ ...valid, route: { actors: ['Bad_Name'], current: 0 } }, /DNS-1123/],
    [{ ...valid, headers: [] }, /"headers"/],
    [{ id: 'x', route: { actors: ['a'], current: 0 } }, /"payload"/],
  ]
  for (const [value, re] of cases) {
    t.match(envelopeProblem(value), re, JSON.stringify(value))
    t.throws(() => parseEnvelope(JSON.stringify(value)), { code: 'ASYA_ERR_ENVELOPE_INVALID' })
  }
  t.equal(envelopeProblem({ ...valid, route: { actors: ['a'], current: 1 } }), undefined, 'current == len is valid')
  t.equal(envelopeProblem({ ...valid, route: { actors: ['a'], current: 6 } }), undefined, 'current past the end is valid: the route is done (SPEC §2)')
})

t.test('queue names follow SPEC §3', async (t) => {
  t.equal(queueName('judge'), 'asya-judge')
  t.equal(dlqName('judge'), 'asya-judge-dlq')
  t.equal(queueName('judge-dlq'), dlqName('judge'))
  t.ok(isValidActorName('a'.repeat(63)))
  t.notOk(isValidActorName('a'.repeat(64)))
  t.notOk(isValidActorName('-a'))
})
