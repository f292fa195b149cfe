/** SQS-specific behaviour on a real SQS-compatible server (fauxqs): heartbeat, size limit, URL cache. */
import t from 'tap'
import { isAsyaError } from '../../src/errors.js'
import { SqsTransport, SQS_MAX_MESSAGE_BYTES } from '../../src/transport/sqs-transport.js'
import { Inbox, randomActor } from './conformance.js'
import { SQS_TEST_CREDENTIALS, startSqsServer } from '../support/sqs-server.js'

const server = await startSqsServer()
const open: SqsTransport[] = []
const make = async (o: { visibilityTimeoutSeconds?: number; heartbeatIntervalMs?: number } = {}): Promise<SqsTransport> => {
  const tr = new SqsTransport({ region: server.region, endpoint: server.endpoint, credentials: SQS_TEST_CREDENTIALS, waitTimeSeconds: 1, ...o })
  await tr.connect()
  open.push(tr)
  return tr
}
t.teardown(async () => {
  for (const tr of open) await tr.close().catch(() => undefined)
  await server.stop()
})

t.test('heartbeat keeps a slow message invisible past its visibility timeout', async (t) => {
  const worker = await make({ visibilityTimeoutSeconds: 2, heartbeatIntervalMs: 500 })
  const other = await make({ visibilityTimeoutSeconds: 2 })
  const a = randomActor('hb')
  await worker.ensureQueue(a)
  await worker.publish(a, Buffer.from('{"slow":true}'))
  const mine = new Inbox()
  await worker.consume(a, mine.push, { prefetch: 1 })
  const d = await mine.next()
  const theirs = new Inbox()
  await other.consume(a, theirs.push, { prefetch: 1 })
  // 3 × the visibility timeout: without the heartbeat the message would be redelivered meanwhile.
  await new Promise((r) => setTimeout(r, 6000))
  t.equal(theirs.seen.length, 0, 'not redelivered while still being processed')
  await d.ack()
  await new Promise((r) => setTimeout(r, 3000))
  t.equal(theirs.seen.length, 0, 'acked: gone for good')
})

t.test('a body over 256 KiB fails with a clear error naming the limit, never truncated', async (t) => {
  const tr = await make()
  const a = randomActor('big')
  await tr.ensureQueue(a)
  const err = await tr.publish(a, Buffer.alloc(SQS_MAX_MESSAGE_BYTES + 1, 'a')).catch((e: unknown) => e)
  t.ok(isAsyaError(err, 'ASYA_ERR_PAYLOAD_TOO_LARGE'))
  t.match(String((err as Error).message), /262144 bytes \(256 KiB\)/)
  t.equal(await tr.messageCount(a), 0, 'nothing sent')
})

t.test('queue URL is cached and re-resolved after the queue is re-created', async (t) => {
  const a1 = await make()
  const a2 = await make()
  const a = randomActor('url')
  await a1.ensureQueue(a)
  await a1.publish(a, Buffer.from('{"n":1}'))
  await a2.deleteQueue(a)
  await a2.ensureQueue(a)
  await a1.publish(a, Buffer.from('{"n":2}'))
  const inbox = new Inbox()
  await a2.consume(a, inbox.push, { prefetch: 1 })
  const d = await inbox.next()
  t.same(d.body, Buffer.from('{"n":2}'), 'the publish after re-creation reached the new queue')
  await d.ack()
})

t.test('credentials and endpoint problems leave the transport not ready, with a log line', async (t) => {
  const lines: string[] = []
  const { createLogger } = await import('../../src/logger.js')
  const { Writable } = await import('node:stream')
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk))
      cb()
    },
  })
  const tr = new SqsTransport({ region: 'us-east-1', endpoint: 'http://127.0.0.1:1', credentials: SQS_TEST_CREDENTIALS, logger: createLogger('t', { destination: sink }) })
  const p = tr.connect().catch(() => undefined)
  await new Promise((r) => setTimeout(r, 1500))
  t.equal(tr.isReady(), false)
  t.ok(lines.some((l) => l.includes('SQS not reachable')), 'logged')
  await tr.close()
  await p
})
