import t from 'tap'
import { SqsTransport } from '../../src/transport/sqs-transport.js'
import { failOnce, runTransportConformance } from './conformance.js'
import { SQS_TEST_CREDENTIALS, startSqsServer, type SqsTestServer } from '../support/sqs-server.js'

let server: SqsTestServer | undefined
const ready = startSqsServer().then((s) => (server = s))
t.before(async () => {
  await ready
})

runTransportConformance({
  name: 'sqs',
  create: async () => {
    const s = server ?? (await ready)
    const tr = new SqsTransport({ region: s.region, endpoint: s.endpoint, credentials: SQS_TEST_CREDENTIALS, waitTimeSeconds: 1, visibilityTimeoutSeconds: 30 })
    await tr.connect()
    return tr
  },
  queueStats: { inFlight: true, consumers: false },
  sidecarEnv: () => ({ ASYA_TRANSPORT: 'sqs', ASYA_AWS_REGION: (server as SqsTestServer).region, ASYA_SQS_ENDPOINT: (server as SqsTestServer).endpoint, ASYA_SQS_WAIT_TIME_SECONDS: '1' }),
  // Retry copies and dead letters are both one SendMessage.
  failNext: (tr) => failOnce(tr, 'send'),
  teardown: async () => {
    await server?.stop()
  },
})
