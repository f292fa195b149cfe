import { MemoryTransport } from '../../src/transport/memory-transport.js'
import { runTransportConformance } from './conformance.js'

runTransportConformance({ name: 'memory', create: async () => new MemoryTransport() })
