import t from 'tap'
import { SingleFlight } from '../../src/single-flight.js'

t.test('concurrent runs share one pass; a run after it settles starts another, also after a failure', async (t) => {
  let passes = 0
  let fail = false
  const release: Array<() => void> = []
  const f = new SingleFlight(async () => {
    passes++
    await new Promise<void>((r) => release.push(r))
    if (fail) throw new Error('pass failed')
  })
  const a = f.run()
  const b = f.run()
  t.equal(a, b, 'the same promise while a pass is in flight')
  release.shift()?.()
  await Promise.all([a, b])
  t.equal(passes, 1)
  fail = true
  const c = f.run()
  release.shift()?.()
  await t.rejects(c, /pass failed/)
  fail = false
  const d = f.run()
  t.not(d, c, 'a failed pass is not kept')
  release.shift()?.()
  await d
  t.equal(passes, 3)
})
