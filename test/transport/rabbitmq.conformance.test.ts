import { failOnce, randomActor, runTransportConformance } from './conformance.js'
import { RABBITMQ_URL, rabbitTransport, testExchange } from '../support/rabbitmq.js'

const exchange = testExchange()
void randomActor
runTransportConformance({
  name: 'rabbitmq',
  create: async () => {
    const tr = rabbitTransport({ exchange })
    await tr.connect()
    return tr
  },
  sidecarEnv: () => ({ ASYA_TRANSPORT: 'rabbitmq', ASYA_RABBITMQ_URL: RABBITMQ_URL, ASYA_RABBITMQ_EXCHANGE: exchange }),
  // Retry copies and dead letters are both one confirmed publish.
  failNext: (tr) => failOnce(tr, 'publishTo'),
})
