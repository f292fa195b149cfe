import t from 'tap'
import { backoffDelay, sleep } from '../../src/backoff.js'

t.test('grows exponentially and is capped', async (t) => {
  const noJitter = { initialMs: 100, maxMs: 1000, jitter: 0 }
  t.same([1, 2, 3, 4, 5, 10].map((n) => backoffDelay(n, noJitter)), [100, 200, 400, 800, 1000, 1000])
})

t.test('jitter stays within [delay*(1-jitter), delay] and never reaches 0', async (t) => {
  t.equal(backoffDelay(3, { initialMs: 100, jitter: 0.5 }, () => 0), 200)
  t.equal(backoffDelay(3, { initialMs: 100, jitter: 0.5 }, () => 1), 400)
  t.equal(backoffDelay(1, { initialMs: 100, jitter: 1 }, () => 0), 1)
})

t.test('sleep can be aborted', async (t) => {
  const ac = new AbortController()
  const p = sleep(10_000, ac.signal)
  ac.abort(new Error('stop'))
  await t.rejects(p, { message: 'stop' })
  await sleep(1)
})
