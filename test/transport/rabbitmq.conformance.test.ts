import { randomActor, runTransportConformance } from './conformance.js'
import { rabbitTransport, testExchange } from '../support/rabbitmq.js'

const exchange = testExchange()
void randomActor
runTransportConformance({
  name: 'rabbitmq',
  create: async () => {
    const tr = rabbitTransport({ exchange })
    await tr.connect()
    return tr
  },
})
