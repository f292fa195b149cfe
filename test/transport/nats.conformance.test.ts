import t from 'tap'
import { NatsTransport } from '../../src/transport/nats-transport.js'
import { failOnce, runTransportConformance } from './conformance.js'
import { startPrivateNats, type PrivateNats } from '../support/private-nats.js'

let server: PrivateNats | undefined
const ready = startPrivateNats().then((s) => (server = s))
t.before(async () => {
  await ready
})

runTransportConformance({
  name: 'nats',
  create: async () => {
    const s = server ?? (await ready)
    const tr = new NatsTransport({ servers: [s.url], ackWaitMs: 30_000, pullExpiresMs: 2000 })
    await tr.connect()
    return tr
  },
  queueStats: { inFlight: true, consumers: false },
  sidecarEnv: () => ({ ASYA_TRANSPORT: 'nats', ASYA_NATS_URL: (server as PrivateNats).url }),
  // A retry is a note then a nak; a dead letter is a publish to the DLQ subject.
  failNext: (tr, verb) => failOnce(tr, verb === 'retry' ? 'writeNote' : 'send'),
  teardown: async () => {
    await server?.destroy()
  },
})
