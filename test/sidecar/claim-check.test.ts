/**
 * Claim check (SPEC §10.4) on RabbitMQ, real runtimes and a real S3-compatible server (fauxqs): a
 * 50 MB payload crosses 3 actors by reference and lands whole at the end actor, which deletes its
 * claims; storage down on publish leaves the input unacked until it is back; a missing or corrupt
 * claim goes to error-end with its reason. The SQS half is claim-check-sqs.test.ts.
 */
import { createHash } from 'node:crypto'
import { PutObjectCommand } from '@aws-sdk/client-s3'
import t from 'tap'
import { envelope, json, rand } from '../support/actor-harness.js'
import { fiftyMegabytesThroughThree, rig, until } from '../support/claim-rig.js'
import { startS3Server } from '../support/s3-server.js'
import { startSqsServer } from '../support/sqs-server.js'

// A 50 MB pipeline: above the default per-file budget on a loaded 2-core machine.
t.setTimeout(600_000)

const s3 = await startS3Server()
const sqs = await startSqsServer()
t.teardown(async () => {
  await s3.stop()
  await sqs.stop()
})

t.test('RabbitMQ: a 50 MB payload through 3 actors by claim check, whole at happy-end, claims deleted', (t) => fiftyMegabytesThroughThree(t, 'rabbitmq', s3, sqs))

t.test('storage down on publish: the input is not acked; once storage is back the envelope goes through', async (t) => {
  const r = await rig(t, 'rabbitmq', s3, sqs)
  const a = `down-${rand()}`
  const b = `down-b-${rand()}`
  const env = r.claimEnv({ ASYA_CLAIM_CHECK_THRESHOLD: '4KiB' })
  const first = await r.actor(a, 'inflate', env)
  await r.actor(b, 'echo', env)
  await r.happyEnd(env)
  await s3.proxy.cut()
  const id = `down-${rand()}`
  try {
    await r.client.publish(a, envelope(id, [a, b], { bytes: 20_000 }))
    await until('a failed store', async () => ((await first.sidecar.metrics.registry.metrics()).match(/claim_check_failures_total\{[^}]*reason="store_failed"\} [1-9]/) ? true : undefined), 30_000)
    // The retry is counted once the broker holds the delayed copy: wait for it rather than race it.
    await until('a publish_failed retry', async () => ((await first.sidecar.metrics.registry.metrics()).match(/retries_total\{[^}]*reason="publish_failed"\} [1-9]/) ? true : undefined), 30_000)
    t.pass('retried like a failed publish: the input is not acked')
    await new Promise((res) => setTimeout(res, 2000))
  } finally {
    await s3.proxy.restore()
  }
  const [key] = await until('the envelope persisted after storage came back', async () => {
    const k = await s3.list(r.results)
    return k.length > 0 ? k : undefined
  }, 60_000)
  t.match(key, new RegExp(`${id}\\.json$`))
  t.equal(r.errors.seen.length, 0, 'never an error')
})

t.test('a missing claim → error-end claim_missing; a tampered one → claim_corrupt; never a crash or a loop', async (t) => {
  const r = await rig(t, 'rabbitmq', s3, sqs)
  const a = `claimed-${rand()}`
  const actor = await r.actor(a, 'echo', r.claimEnv())
  const body = Buffer.from(JSON.stringify({ big: 'x'.repeat(5000) }))
  const sha = createHash('sha256').update(body).digest('hex')
  const ref = (key: string, extra: Record<string, unknown> = {}) => ({ v: 1, bucket: r.claims, key, size: body.length, sha256: sha, ...extra })
  const missing = `missing-${rand()}`
  await r.client.publish(a, Buffer.from(JSON.stringify({ id: missing, route: { actors: [a], current: 0 }, payload: null, headers: { trace: 't' }, asya_claim: ref('asya-claims/nowhere.json') })))
  const e1 = json(await r.errors.next(30_000))
  t.equal(e1.id, missing)
  t.equal(e1.payload.details.reason, 'claim_missing')
  t.same(e1.headers, { trace: 't' }, 'headers carried')
  t.notOk('asya_claim' in e1, 'the error envelope carries no live reference')
  t.equal(e1.payload.details.claim.key, 'asya-claims/nowhere.json', 'the reference is kept under details for forensics')

  await s3.client.send(new PutObjectCommand({ Bucket: r.claims, Key: 'asya-claims/tampered.json', Body: Buffer.from(JSON.stringify({ big: 'y'.repeat(5000) })) }))
  const corrupt = `corrupt-${rand()}`
  await r.client.publish(a, Buffer.from(JSON.stringify({ id: corrupt, route: { actors: [a], current: 0 }, payload: null, asya_claim: ref('asya-claims/tampered.json') })))
  const e2 = json(await r.errors.next(30_000))
  t.equal(e2.id, corrupt)
  t.equal(e2.payload.details.reason, 'claim_corrupt')
  t.match(e2.payload.details.message, /SHA-256/)

  const foreign = `foreign-${rand()}`
  await r.client.publish(a, Buffer.from(JSON.stringify({ id: foreign, route: { actors: [a], current: 0 }, payload: null, asya_claim: ref('k', { bucket: 'someone-elses-bucket' }) })))
  const e3 = json(await r.errors.next(30_000))
  t.equal(e3.payload.details.reason, 'claim_corrupt', 'a reference to another bucket is refused')
  t.equal(await r.client.messageCount(a), 0, 'nothing left in the queue: no hot loop')
  t.match(await actor.sidecar.metrics.registry.metrics(), /claim_check_failures_total\{[^}]*reason="claim_missing"\} 1/)
})
