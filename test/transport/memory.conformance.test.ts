import { MemoryTransport } from '../../src/transport/memory-transport.js'
import { failOnce, runTransportConformance } from './conformance.js'

runTransportConformance({
  name: 'memory',
  create: async () => new MemoryTransport(),
  sidecarEnv: () => ({ ASYA_TRANSPORT: 'memory' }),
  // A delayed copy is scheduled with broker.later; a dead letter goes through broker.ensure.
  failNext: (tr, verb) => failOnce((tr as MemoryTransport).broker, verb === 'retry' ? 'later' : 'ensure'),
})
