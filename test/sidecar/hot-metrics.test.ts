/** Bound metric instruments (sidecar/hot-metrics.ts): the same exposition as prom-client's own calls. */
import t from 'tap'
import { Registry } from 'prom-client'
import { SidecarMetrics } from '../../sidecar/metrics.js'
import { BoundCounter, BoundGauge, BoundHistogram } from '../../sidecar/hot-metrics.js'

function pair(): [SidecarMetrics, SidecarMetrics] {
  return [new SidecarMetrics('asya_actor', new Registry(), { defaultMetrics: false }), new SidecarMetrics('asya_actor', new Registry(), { defaultMetrics: false })]
}

t.test('bound updates expose exactly what prom-client calls with labels expose', async (t) => {
  const [plain, bound] = pair()
  const q = 'asya-a'
  const hot = bound.hot(q, 'rabbitmq')
  const values = [0.0001, 0.0005, 0.0007, 0.003, 0.2, 1, 7, 31, 5000, 0]
  for (const v of values) {
    plain.received.inc({ queue: q, transport: 'rabbitmq' })
    hot.received.inc()
    plain.processingDuration.observe({ queue: q }, v)
    hot.processingDuration.observe(v)
    plain.receiveDuration.observe({ queue: q, transport: 'rabbitmq' }, v)
    hot.receiveDuration.observe(v)
    plain.envelopeSize.observe({ direction: 'in' }, v * 1e6)
    hot.envelopeIn.observe(v * 1e6)
    plain.sendDuration.observe({ destination_queue: 'asya-b', transport: 'rabbitmq' }, v)
    hot.sendDuration.get('asya-b').observe(v)
    plain.sent.inc({ destination_queue: 'asya-b', message_type: 'routed' })
    hot.sent.get('asya-b\u0000routed').inc()
    plain.processed.inc({ queue: q, status: 'success' })
    hot.processed.get('success').inc()
    plain.batchEnvelopes.observe(Math.round(v * 100))
    hot.batchEnvelopes.observe(Math.round(v * 100))
    plain.active.inc()
    hot.active.inc()
    plain.deliveryWindow.set(v)
    hot.deliveryWindow.set(v)
  }
  plain.active.dec()
  hot.active.dec()
  t.equal(await bound.registry.metrics(), await plain.registry.metrics())
})

t.test('updates through the prom-client objects and resets stay consistent with bound ones', async (t) => {
  const [plain, bound] = pair()
  const h = new BoundHistogram(bound.runtimeDuration, { queue: 'q' })
  const c = new BoundCounter(bound.processed, { queue: 'q', status: 'retry' })
  const g = new BoundGauge(bound.callsInFlight)
  for (const m of [plain, bound]) m.runtimeDuration.observe({ queue: 'q' }, 0.01)
  plain.runtimeDuration.observe({ queue: 'q' }, 0.02)
  h.observe(0.02)
  for (const m of [plain, bound]) m.processed.inc({ queue: 'q', status: 'retry' }, 2)
  plain.processed.inc({ queue: 'q', status: 'retry' })
  c.inc()
  plain.callsInFlight.set(3)
  g.set(3)
  t.equal(await bound.registry.metrics(), await plain.registry.metrics(), 'mixed')
  for (const m of [plain, bound]) m.registry.resetMetrics()
  plain.runtimeDuration.observe({ queue: 'q' }, 0.5)
  h.observe(0.5)
  plain.processed.inc({ queue: 'q', status: 'retry' })
  c.inc()
  plain.callsInFlight.set(1)
  g.set(1)
  t.equal(await bound.registry.metrics(), await plain.registry.metrics(), 'after a reset the bound instruments re-create their series')
  t.throws(() => h.observe(Number.NaN), TypeError, 'values prom-client refuses are still refused')
  t.throws(() => c.inc(-1))
})
