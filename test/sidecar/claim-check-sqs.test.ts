/**
 * Claim check on SQS (fauxqs): a 50 MB payload through 3 actors by reference, whole at happy-end;
 * without the claim check the same payload is payload_too_large at error-end.
 */
import t from 'tap'
import { envelope, json, rand } from '../support/actor-harness.js'
import { fiftyMegabytesThroughThree, rig } from '../support/claim-rig.js'
import { startS3Server } from '../support/s3-server.js'
import { startSqsServer } from '../support/sqs-server.js'

t.setTimeout(600_000)

const s3 = await startS3Server()
const sqs = await startSqsServer()
t.teardown(async () => {
  await s3.stop()
  await sqs.stop()
})

t.test('SQS: a 50 MB payload through 3 actors by claim check, whole at happy-end, claims deleted', (t) => fiftyMegabytesThroughThree(t, 'sqs', s3, sqs))

t.test('SQS without the claim check: the same payload is payload_too_large at error-end', async (t) => {
  const r = await rig(t, 'sqs', s3, sqs)
  const a = `nocc-${rand()}`
  await r.actor(a, 'inflate')
  const id = `nocc-${rand()}`
  await r.client.publish(a, envelope(id, [a, 'x'], { bytes: 50 * 1024 * 1024 }))
  const e = json(await r.errors.next(120_000))
  t.equal(e.id, id)
  t.equal(e.payload.details.reason, 'payload_too_large')
  t.match(e.payload.details.message, /256 KiB/)
})

