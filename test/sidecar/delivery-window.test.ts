/** The delivery window's sizing rules (sidecar/prefetch-window.ts): pure arithmetic, no broker. */
import t from 'tap'
import { PrefetchWindow } from '../../sidecar/prefetch-window.js'

function attached(w: PrefetchWindow): number[] {
  const applied: number[] = []
  w.attach({ cancel: async () => undefined, setPrefetch: async (n: number) => void applied.push(n) })
  return applied
}

t.test('the base window is what runs plus what can start within one call, never less than the configured prefetch', async (t) => {
  t.equal(new PrefetchWindow(2).size, 2, 'defaults: one running, one waiting')
  t.equal(new PrefetchWindow(2, { slots: 16 }).size, 32, 'concurrency 16: 16 running, 16 ready')
  t.equal(new PrefetchWindow(2, { slots: 32 }).size, 64, 'batch 32: one batch running, the next gathering')
  t.equal(new PrefetchWindow(2, { slots: 64 }).size, 128, 'concurrency 4 × batch 16')
  t.equal(new PrefetchWindow(10, { slots: 4 }).size, 10, 'an explicit larger prefetch is kept')
})

t.test('fast calls widen only as far as the queued envelopes can start within fastMs', async (t) => {
  const w = new PrefetchWindow(2, { wide: 32, fastMs: 50, fastStreak: 3 })
  const applied = attached(w)
  for (const ms of [10, 10, 10]) w.observe(ms)
  t.same(applied, [8], '1 slot, 10 ms calls: 1 + 5 startable within 50 ms → 8 (power of two)')
  for (const ms of [1, 1, 1]) w.observe(ms)
  t.same(applied, [8, 32], '1 ms calls: capped at wide')
  for (const ms of [1, 1]) w.observe(ms)
  t.same(applied, [8, 32], 'no basic.qos per message')
  const many = new PrefetchWindow(2, { wide: 256, fastStreak: 2, slots: 16 })
  const a2 = attached(many)
  many.observe(40)
  many.observe(40)
  t.same(a2, [64], '16 slots of 40 ms: 16 + 20 → 64')
  many.observe(1)
  many.observe(1)
  t.same(a2, [64, 256], '1 ms calls: 16 + 800 → capped at wide')
})

t.test('hysteresis: a mean call time wandering near a boundary does not flip the window (each flip is a new consumer)', async (t) => {
  const kept: number[] = []
  const w = new PrefetchWindow(2, { wide: 32, fastMs: 50, fastStreak: 2, shed: (keep) => (kept.push(keep), 0) })
  const applied = attached(w)
  w.observe(3)
  w.observe(3)
  t.same(applied, [32], '3 ms calls: 1 + 17 → 32')
  for (let i = 0; i < 10; i++) w.observe(i % 4 < 2 ? 3.6 : 3)
  t.same(applied, [32], '3.6 ms would size 16, but 32 still starts within 2 × fastMs: kept')
  for (let i = 0; i < 10; i++) w.observe(6)
  t.same(applied, [32], '6 ms: 16 would do, 32 still starts within 2 × fastMs: kept')
  for (let i = 0; i < 4; i++) w.observe(10)
  t.same(applied, [32], 'two streaks of 10 ms calls are not enough to narrow')
  w.observe(10)
  w.observe(10)
  t.same(applied, [32, 8], 'a third one narrows to what starts within fastMs (1 + 5 → 8)')
  t.same(kept, [7], 'and sheds beyond it, as before')
  w.observe(1)
  w.observe(1)
  t.same(applied, [32, 8, 32], 'widening is at once')
  w.observe(120)
  w.observe(1)
  t.same(applied, [32, 8, 32], 'one call of 120 ms amid fast ones is a hiccup (a busy host), not slow work')
  w.observe(120)
  w.observe(120)
  t.same(applied, [32, 8, 32, 2], 'two slow calls in a row restore the base')
  w.observe(1)
  w.observe(1)
  t.same(applied, [32, 8, 32, 2, 32])
  w.observe(900)
  t.same(applied, [32, 8, 32, 2, 32, 2], 'a call over 4 × fastMs restores the base at once')
})

t.test('the first slow call restores the base and sheds what the smaller window no longer covers', async (t) => {
  const kept: number[] = []
  const w = new PrefetchWindow(2, { wide: 32, fastStreak: 2, shed: (keep) => (kept.push(keep), 5) })
  const applied = attached(w)
  w.observe(1)
  w.observe(1)
  t.same(applied, [32])
  t.same(kept, [], 'widening sheds nothing')
  w.observe(900)
  t.same(applied, [32, 2])
  t.same(kept, [1], 'queued envelopes beyond base − slots (1) are given back')
  t.equal(w.shedTotal, 5)
  w.observe(900)
  t.same(kept, [1], 'already at the base: nothing more to shed')
  const batch = new PrefetchWindow(2, { slots: 32, wide: 256, fastStreak: 1, shed: (keep) => (kept.push(keep), 0) })
  attached(batch)
  batch.observe(5)
  batch.observe(500)
  t.same(kept, [1, 32], 'batch 32: one batch may stay queued')
  const off = new PrefetchWindow(2, { wide: 2, fastStreak: 1 })
  const a3 = attached(off)
  for (let i = 0; i < 10; i++) off.observe(1)
  t.same(a3, [], 'wide = base turns adaptation off')
})

t.test('ASYA_CONCURRENCY, ASYA_BATCH_SIZE, ASYA_BATCH_WAIT: defaults, and one error naming every bad one', async (t) => {
  const { readSidecarConfig } = await import('../../sidecar/config.js')
  const base = { ASYA_ACTOR_NAME: 'a', ASYA_TRANSPORT: 'memory' }
  const d = readSidecarConfig(base)
  t.same([d.concurrency, d.batchSize, d.batchWaitMs], [1, 1, 20])
  const c = readSidecarConfig({ ...base, ASYA_CONCURRENCY: '16', ASYA_BATCH_SIZE: '32', ASYA_BATCH_WAIT: '2ms' })
  t.same([c.concurrency, c.batchSize, c.batchWaitMs], [16, 32, 2])
  t.equal(readSidecarConfig({ ...base, ASYA_BATCH_WAIT: '0' }).batchWaitMs, 0, 'no wait is allowed')
  t.throws(() => readSidecarConfig({ ...base, ASYA_CONCURRENCY: '0', ASYA_BATCH_SIZE: 'lots', ASYA_BATCH_WAIT: '2m' }), {
    code: 'ASYA_ERR_CONFIG_INVALID',
    message: /ASYA_CONCURRENCY[\s\S]*ASYA_BATCH_SIZE[\s\S]*ASYA_BATCH_WAIT/,
  })
})

t.test('probation after a start: one at a time while the broker hands back redelivered messages', async (t) => {
  const w = new PrefetchWindow(2, { slots: 4, fastStreak: 1, probation: true })
  const applied = attached(w)
  t.equal(w.size, 1, 'a start takes one message at a time')
  t.equal(w.inProbation, true)
  w.delivered(true)
  w.observe(1)
  t.equal(w.size, 1, 'redelivered messages (what a dead sidecar held) and fast calls keep it at 1')
  t.same(applied, [])
  w.delivered(false)
  t.equal(w.size, 8, 'the first message never delivered before restores the base window')
  t.same(applied, [8])
  t.equal(w.inProbation, false)
  w.delivered(true)
  t.equal(w.size, 8, 'later redeliveries do not bring probation back')
  t.equal(new PrefetchWindow(2).size, 2, 'off unless asked')
})
