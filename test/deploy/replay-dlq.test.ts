/** deploy/tools/replay-dlq.ts against the real RabbitMQ, with the topology the sidecar and controller declare. */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import amqp from 'amqplib'
import t from 'tap'
import { replayDlq } from '../../deploy/tools/replay-dlq.js'
import { declareActorTopology, declareExchange } from '../../src/transport/rabbitmq-topology.js'
import { RABBITMQ_URL } from '../support/rabbitmq.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

t.test('replays dead letters with fresh attempt headers, bounded, never losing one', async (t) => {
  const exchange = `asya-replay-${randomBytes(4).toString('hex')}`
  const actor = `replay-${randomBytes(4).toString('hex')}`
  const conn = await amqp.connect(RABBITMQ_URL)
  const ch = await conn.createConfirmChannel()
  t.teardown(async () => {
    for (const q of [`asya-${actor}`, `asya-${actor}-dlq`]) await ch.deleteQueue(q)
    await ch.deleteExchange(exchange)
    await conn.close()
  })
  await declareExchange(ch, exchange)
  await declareActorTopology(ch, actor, exchange)
  const dead = (i: number): void => {
    ch.sendToQueue(`asya-${actor}-dlq`, Buffer.from(JSON.stringify({ id: `m${i}`, route: { actors: [actor], current: 0 }, payload: i })), {
      persistent: true,
      contentType: 'application/json',
      messageId: `m${i}`,
      headers: { 'x-asya-reason': i === 0 ? 'publish_failed' : 'delivery_limit', 'x-asya-error': 'boom', 'x-asya-attempts': 5, 'x-asya-actor': actor, 'x-asya-attempt': 6, 'x-asya-hops': 3, 'x-custom': 'kept' },
    })
  }
  for (let i = 0; i < 3; i++) dead(i)
  await ch.waitForConfirms()

  const lines: string[] = []
  const listed = await replayDlq({ url: RABBITMQ_URL, exchange, actor, dryRun: true, log: (l) => lines.push(l) })
  t.same(listed.reasons, { publish_failed: 1, delivery_limit: 2 })
  t.equal(listed.replayed, 0)
  t.match(lines[0], /^m0\tpublish_failed\tboom$/)
  t.equal((await ch.checkQueue(`asya-${actor}-dlq`)).messageCount, 3, 'dry run leaves every dead letter in place')

  const r = await replayDlq({ url: RABBITMQ_URL, exchange, actor, max: 2, log: () => undefined })
  t.equal(r.replayed, 2)
  t.equal((await ch.checkQueue(`asya-${actor}-dlq`)).messageCount, 1, 'bounded by --max')
  for (let i = 0; i < 2; i++) {
    const m = await ch.get(`asya-${actor}`, { noAck: true })
    if (m === false) throw new Error('replayed message missing from the actor queue')
    t.equal(JSON.parse(m.content.toString()).id, `m${i}`, 'body unchanged, order kept')
    t.equal(m.properties.messageId, `m${i}`)
    t.ok(m.properties.deliveryMode === 2, 'persistent')
    const h = m.properties.headers ?? {}
    for (const k of ['x-asya-reason', 'x-asya-error', 'x-asya-attempts', 'x-asya-actor', 'x-asya-attempt']) t.notOk(k in h, `${k} dropped`)
    t.equal(h['x-asya-hops'], 3, 'hop count kept')
    t.equal(h['x-custom'], 'kept', 'other headers kept')
  }

  // Nothing bound to the routing key: the publish is returned, and the dead letter stays.
  await ch.unbindQueue(`asya-${actor}`, exchange, actor)
  await t.rejects(replayDlq({ url: RABBITMQ_URL, exchange, actor, log: () => undefined }), /no queue is bound/)
  t.equal((await ch.checkQueue(`asya-${actor}-dlq`)).messageCount, 1, 'an unroutable replay loses nothing')
  t.equal((await ch.checkQueue(`asya-${actor}`)).messageCount, 0)
})

t.test('CLI rejects bad arguments with usage and exit 2', async (t) => {
  const run = promisify(execFile)
  const err = await run(process.execPath, ['--import', join(root, 'scripts/register-ts.mjs'), join(root, 'deploy/tools/replay-dlq.ts'), '--actor', 'Bad_Name'], { cwd: root }).catch((e: { code: number; stderr: string }) => e)
  t.equal((err as { code: number }).code, 2)
  t.match((err as { stderr: string }).stderr, /usage: replay-dlq/)
})
