import t from 'tap'
import { EnvReader, parseDuration } from '../../src/config/env.js'

t.test('parseDuration accepts Go durations and bare seconds', async (t) => {
  t.equal(parseDuration('300ms'), 300)
  t.equal(parseDuration('5s'), 5000)
  t.equal(parseDuration('5m'), 300_000)
  t.equal(parseDuration('1h30m'), 5_400_000)
  t.equal(parseDuration('1.5s'), 1500)
  t.equal(parseDuration('300'), 300_000)
  t.equal(parseDuration('5 minutes'), undefined)
  t.equal(parseDuration('-1s'), undefined)
  t.equal(parseDuration(''), undefined)
})

t.test('EnvReader reports every bad variable by name at once', async (t) => {
  const env = new EnvReader({ A: 'x', B: 'maybe', C: '10', D: 'soon', E: 'rabbit' })
  env.int('A', 1)
  env.bool('B', true)
  t.equal(env.int('C', 1, { max: 5 }), 1)
  env.duration('D', 1000)
  env.oneOf('E', ['rabbitmq', 'sqs'] as const, 'rabbitmq')
  env.required('MISSING')
  try {
    env.finish()
    t.fail('finish() should throw')
  } catch (err) {
    const e = err as Error & { code?: string }
    t.equal(e.code, 'ASYA_ERR_CONFIG_INVALID')
    for (const name of ['A=', 'B=', 'C=', 'D=', 'E=', 'MISSING']) t.match(e.message, name)
  }
})

t.test('EnvReader returns values and defaults when valid', async (t) => {
  const env = new EnvReader({ N: '7', F: 'off', T: '2m', M: 'sqs', EMPTY: '  ' })
  t.equal(env.int('N', 1), 7)
  t.equal(env.bool('F', true), false)
  t.equal(env.duration('T', 1), 120_000)
  t.equal(env.oneOf('M', ['rabbitmq', 'sqs'] as const, 'rabbitmq'), 'sqs')
  t.equal(env.string('EMPTY', 'dflt'), 'dflt', 'blank counts as unset')
  env.finish()
  t.pass('no problems')
})
