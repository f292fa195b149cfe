/**
 * The claim-check test rig: a broker world (RabbitMQ or SQS on fauxqs), an S3-compatible server,
 * real actors and a happy-end sidecar, and the 50 MB-through-3-actors scenario both transports run.
 */
import { createHash } from 'node:crypto'
import { GetObjectCommand } from '@aws-sdk/client-s3'
import type { Test } from 'tap'
import { createLogger } from '../../src/logger.js'
import { SqsTransport } from '../../src/transport/sqs-transport.js'
import type { Transport } from '../../src/transport/transport.js'
import { readSidecarConfig } from '../../sidecar/config.js'
import { Sidecar } from '../../sidecar/sidecar.js'
import { envelope, rabbitWorld, rand, sqsWorld, startActor, type TestActor, type World } from './actor-harness.js'
import { rabbitTransport } from './rabbitmq.js'
import type { S3TestServer } from './s3-server.js'
import { SQS_TEST_CREDENTIALS, type SqsTestServer } from './sqs-server.js'
import { Inbox } from '../transport/conformance.js'


export interface Rig {
  world: World
  results: string
  claims: string
  client: Transport
  errors: Inbox
  actor(name: string, handler: string, env?: Record<string, string>): Promise<TestActor>
  /** The happy-end sidecar (no runtime), persisting to `results`. */
  happyEnd(env?: Record<string, string>): Promise<Sidecar>
  claimEnv(extra?: Record<string, string>): Record<string, string>
}

export async function rig(t: Test, kind: 'rabbitmq' | 'sqs', s3: S3TestServer, sqs: SqsTestServer): Promise<Rig> {
  const world = kind === 'rabbitmq' ? rabbitWorld() : sqsWorld(sqs.endpoint, sqs.region)
  const results = `results-${rand()}`
  const claims = `claims-${rand()}`
  await s3.createBucket(results)
  await s3.createBucket(claims)
  const transports: Transport[] = []
  const actors: TestActor[] = []
  const sidecars: Sidecar[] = []
  const mk = async (): Promise<Transport> => {
    const tr =
      kind === 'rabbitmq'
        ? rabbitTransport({ exchange: world.exchange })
        : new SqsTransport({ region: sqs.region, endpoint: sqs.endpoint, credentials: SQS_TEST_CREDENTIALS, waitTimeSeconds: 1, visibilityTimeoutSeconds: 60 })
    await tr.connect()
    transports.push(tr)
    return tr
  }
  const client = await mk()
  await client.ensureQueue(world.happyEnd)
  await client.ensureQueue(world.errorEnd)
  const errors = new Inbox()
  await client.consume(world.errorEnd, errors.push, { prefetch: 10 })
  t.teardown(async () => {
    for (const s of sidecars) await s.stop().catch(() => undefined)
    for (const a of actors) await a.stop().catch(() => undefined)
    for (const q of [world.happyEnd, world.errorEnd, ...actors.map((a) => a.name)]) {
      await client.deleteQueue(q).catch(() => undefined)
      await client.deleteQueue(`${q}-dlq`).catch(() => undefined)
    }
    for (const tr of transports) await tr.close().catch(() => undefined)
  })
  const claimEnv = (extra: Record<string, string> = {}): Record<string, string> => ({ ...s3.env(results), ASYA_CLAIM_CHECK_BUCKET: claims, ...extra })
  return {
    world,
    results,
    claims,
    client,
    errors,
    claimEnv,
    actor: async (name, handler, env = {}) => {
      const a = await startActor({ name, handler, world, transport: await mk(), env: { ASYA_RUNTIME_TIMEOUT: '60s', ...env } })
      actors.push(a)
      return a
    },
    happyEnd: async (env = claimEnv()) => {
      const config = readSidecarConfig({ ...world.env, ...env, ASYA_ACTOR_NAME: world.happyEnd, ASYA_IS_END_ACTOR: 'true', ASYA_RUNTIME_ENABLED: 'false' })
      const sc = new Sidecar({ config, transport: await mk(), logger: createLogger('end', { level: process.env.ASYA_TEST_LOG_LEVEL ?? 'silent' }), serveHttp: false })
      sidecars.push(sc)
      await sc.start()
      return sc
    },
  }
}

export async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 400_000): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

export async function fiftyMegabytesThroughThree(t: Test, kind: 'rabbitmq' | 'sqs', s3: S3TestServer, sqs: SqsTestServer): Promise<void> {
  const r = await rig(t, kind, s3, sqs)
  const [a, b, c] = [`big-a-${rand()}`, `big-b-${rand()}`, `big-c-${rand()}`]
  const env = r.claimEnv()
  const first = await r.actor(a, 'inflate', env)
  const middle = await r.actor(b, 'echo', env)
  await r.actor(c, 'echo', env)
  await r.happyEnd()
  const id = `big-${rand()}`
  const bytes = Number(process.env.CLAIM_TEST_BYTES ?? 50 * 1024 * 1024)
  await r.client.publish(a, envelope(id, [a, b, c], { bytes }))
  const [key] = await until('the 50 MB result persisted by happy-end', async () => {
    const k = await s3.list(r.results)
    return k.length > 0 ? k : undefined
  })
  t.match(key, new RegExp(`^happy-asya/.+/${c}/${id}\\.json$`))
  const obj = await s3.client.send(new GetObjectCommand({ Bucket: r.results, Key: key }))
  const text = await (obj.Body as { transformToString(): Promise<string> }).transformToString()
  const persisted = JSON.parse(text) as Record<string, any>
  t.equal(persisted.payload.blob.length, bytes, 'the end actor persisted the restored envelope, payload whole')
  t.equal(createHash('sha256').update(persisted.payload.blob).digest('hex'), createHash('sha256').update('z'.repeat(bytes)).digest('hex'), 'byte for byte')
  t.notOk('asya_claim' in persisted, 'no reference left in the persisted envelope')
  await until('claims deleted by the end actor', async () => ((await s3.list(r.claims)).length === 0 ? true : undefined), 30_000)
  t.pass('claim objects deleted once the envelope finished')
  t.equal(r.errors.seen.length, 0, 'nothing went to error-end')
  const m = await middle.sidecar.metrics.registry.metrics()
  t.match(m, /claim_check_total\{[^}]*operation="restore"\} [1-9]/, "the middle actor restored before its runtime call (again on a redelivery: at-least-once)")
  t.match(m, /claim_check_total\{[^}]*operation="store"\} [1-9]/, "and parked its own result")
  const stored = /claim_check_bytes_total\{[^}]*operation="store"\} (\d+)/.exec(await first.sidecar.metrics.registry.metrics())
  t.ok(Number(stored?.[1]) > bytes, `the first actor parked the payload (${stored?.[1]} bytes)`)
}

