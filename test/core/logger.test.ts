/** lazyChild (src/logger.ts): the child a sidecar makes per envelope, created only when a line is logged. */
import t from 'tap'
import { Writable } from 'node:stream'
import { createLogger, lazyChild } from '../../src/logger.js'

t.test('lines carry the child bindings; nothing is created for silent envelopes or disabled levels', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const dest = new Writable({ write: (c, _e, cb) => (lines.push(JSON.parse(String(c)) as Record<string, unknown>), cb()) })
  const parent = createLogger('test', { level: 'info', destination: dest })
  let made = 0
  const bindings = (): Record<string, unknown> => (made++, { envelope_id: 'e1', attempt: 2 })
  const silent = lazyChild(parent, bindings)
  t.equal(silent.level, 'info')
  silent.debug('below the level')
  t.equal(made, 0, 'no child for a level that is off')
  const log = lazyChild(parent, bindings)
  log.info({ a: 1 }, 'one')
  log.warn('two')
  log.child({ z: 3 }).error('three')
  t.equal(made, 1, 'one child, made at the first line')
  await new Promise((r) => setImmediate(r))
  t.match(lines, [
    { level: 'info', component: 'test', envelope_id: 'e1', attempt: 2, a: 1, msg: 'one' },
    { level: 'warn', envelope_id: 'e1', msg: 'two' },
    { level: 'error', envelope_id: 'e1', z: 3, msg: 'three' },
  ])
  t.same(log.bindings(), { component: 'test', envelope_id: 'e1', attempt: 2 })
})
