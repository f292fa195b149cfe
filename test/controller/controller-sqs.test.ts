import t from 'tap'
import { CreateQueueCommand, GetQueueAttributesCommand, GetQueueUrlCommand, ListQueueTagsCommand, SQSClient } from '@aws-sdk/client-sqs'
import { startFauxqs, type FauxqsServer } from 'fauxqs'
import { SqsQueues } from '../../src/controller/sqs-queues.js'
import { planSqsAttributes, sqsVisibilityFor } from '../../src/controller/sqs-attributes.js'
import { SqsTransport } from '../../src/transport/sqs-transport.js'
import { annotations, deployment, getCustom, rid, silentLogger, startEnv, waitFor, type Env } from './helpers.js'

let env: Env
let sqsServer: FauxqsServer
let client: SQSClient
t.before(async () => {
  env = await startEnv()
  sqsServer = await startFauxqs({ port: 0, logger: false })
// A failed test must not leave its controller running into the next one.
t.afterEach(async () => {
  await env.stopControllers()
})
  client = new SQSClient({ region: 'us-east-1', endpoint: sqsServer.address, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } })
})
t.teardown(async () => {
  await env.close()
  client.destroy()
  await sqsServer.stop()
})

const status = (ns: string, name: string, want: string) =>
  waitFor(`${ns}/${name} ${want}`, async () => {
    const a = await annotations(env.apis, ns, name)
    return a['asya.sh/status'] === want ? a : undefined
  })

function sqsController() {
  return env.makeController({
    queues: { sqs: new SqsQueues({ client, logger: silentLogger, maxReceiveCount: 4 }) },
    defaultTransport: 'sqs',
    scaler: (_tr, actor) => ({
      transport: 'sqs',
      sqs: { region: 'us-east-1', endpoint: sqsServer.address, queueUrl: `${sqsServer.address}/000000000000/asya-${actor}`, auth: { kind: 'operator' } },
    }),
  })
}

t.test('SQS: queue + DLQ with redrive policy and tags, aws-sqs-queue ScaledObject; retention delete removes them', async (t) => {
  const ns = rid('ns')
  const actor = rid('a')
  const c = sqsController()
  c.start()
  await env.apis.apps.createNamespacedDeployment({ namespace: ns, body: deployment(ns, 'sq', actor, { 'asya.sh/queue-retention': 'delete' }) })
  const a = await status(ns, 'sq', 'Ready')
  t.equal(a['asya.sh/wired'], `sqs:${actor}`)
  const url = (await client.send(new GetQueueUrlCommand({ QueueName: `asya-${actor}` }))).QueueUrl
  const dlqUrl = (await client.send(new GetQueueUrlCommand({ QueueName: `asya-${actor}-dlq` }))).QueueUrl
  const attrs = await client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['RedrivePolicy'] }))
  const redrive = JSON.parse(attrs.Attributes?.RedrivePolicy ?? '{}')
  t.match(redrive.deadLetterTargetArn, new RegExp(`asya-${actor}-dlq$`))
  t.equal(Number(redrive.maxReceiveCount), 4)
  const tags = await client.send(new ListQueueTagsCommand({ QueueUrl: dlqUrl }))
  t.same(tags.Tags, { 'asya.sh/actor': actor, 'asya.sh/namespace': ns })
  const so = await getCustom(env.apis, ns, 'scaledobjects', 'sq')
  t.same(so?.spec.triggers[0].metadata, {
    queueURL: `${sqsServer.address}/000000000000/asya-${actor}`,
    queueLength: '5',
    awsRegion: 'us-east-1',
    scaleOnInFlight: 'true',
    awsEndpoint: sqsServer.address,
    identityOwner: 'operator',
  })
  t.equal(await getCustom(env.apis, ns, 'triggerauthentications', 'sq-trigger-auth'), undefined, 'operator identity: no TriggerAuthentication')

  await env.apis.apps.deleteNamespacedDeployment({ namespace: ns, name: 'sq' })
  await waitFor('SQS queue deleted', async () => {
    try {
      await client.send(new GetQueueUrlCommand({ QueueName: `asya-${actor}` }))
      return false
    } catch {
      return true
    }
  })
  t.pass('queue deleted on workload deletion with retention=delete')
  await c.stop()
})

t.test('SQS: a queue a sidecar created first (no redrive, no tags) is brought to the configured attributes and wired', async (t) => {
  const ns = rid('ns')
  const actor = rid('a')
  // Exactly what a sidecar does when it starts before the controller (SqsTransport.ensureQueue).
  const sidecar = new SqsTransport({ region: 'us-east-1', endpoint: sqsServer.address, credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, visibilityTimeoutSeconds: 100 })
  await sidecar.connect()
  await sidecar.ensureQueue(actor)
  await sidecar.close()
  const url = (await client.send(new GetQueueUrlCommand({ QueueName: `asya-${actor}` }))).QueueUrl
  t.equal((await client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['RedrivePolicy'] }))).Attributes?.RedrivePolicy, undefined, 'precondition: no redrive policy')
  const c = sqsController()
  c.start()
  await env.apis.apps.createNamespacedDeployment({ namespace: ns, body: deployment(ns, 'sq2', actor, {}, { 'asya.sh/timeout': '120' }) })
  const a = await status(ns, 'sq2', 'Ready')
  t.equal(a['asya.sh/wired'], `sqs:${actor}`)
  const attrs = (await client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['All'] }))).Attributes ?? {}
  const redrive = JSON.parse(attrs.RedrivePolicy ?? '{}')
  t.match(redrive.deadLetterTargetArn, new RegExp(`asya-${actor}-dlq$`), 'redrive policy to the DLQ set')
  t.equal(Number(redrive.maxReceiveCount), 4)
  t.equal(attrs.VisibilityTimeout, '240', 'visibility 100 → 2 × the pod template asya.sh/timeout (120 s)')
  const tags = await client.send(new ListQueueTagsCommand({ QueueUrl: url }))
  t.same(tags.Tags, { 'asya.sh/actor': actor, 'asya.sh/namespace': ns }, 'tags added to the existing queue')
  await c.stop()
})

t.test('SQS: ensure sets the visibility the timeout asks for, idempotently; only unsafe differences are reported', async (t) => {
  const actor = rid('a')
  const queues = new SqsQueues({ client, logger: silentLogger, maxReceiveCount: 4 })
  await client.send(new CreateQueueCommand({ QueueName: `asya-${actor}`, Attributes: { VisibilityTimeout: '77' } }))
  await queues.ensure(actor, 'ns1', { timeoutSeconds: 120 })
  const url = (await client.send(new GetQueueUrlCommand({ QueueName: `asya-${actor}` }))).QueueUrl
  const get = async (): Promise<Record<string, string>> => (await client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['All'] }))).Attributes ?? {}
  t.equal((await get()).VisibilityTimeout, '240', 'VisibilityTimeout 77 → 2 × 120 s')
  t.ok((await get()).RedrivePolicy, 'redrive set')
  await queues.ensure(actor, 'ns1', { timeoutSeconds: 120 })
  t.equal((await get()).VisibilityTimeout, '240', 'second ensure: unchanged, no error')

  // An operator's own DLQ: not ours to move. The safe difference (visibility) is still applied.
  const foreign = `ops-dlq-${rid('x')}`
  const fUrl = (await client.send(new CreateQueueCommand({ QueueName: foreign }))).QueueUrl
  const fArn = (await client.send(new GetQueueAttributesCommand({ QueueUrl: fUrl, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn ?? ''
  const other = rid('b')
  await client.send(new CreateQueueCommand({ QueueName: `asya-${other}`, Attributes: { VisibilityTimeout: '50', RedrivePolicy: JSON.stringify({ deadLetterTargetArn: fArn, maxReceiveCount: 9 }) } }))
  const err = await queues.ensure(other, 'ns1', { timeoutSeconds: 60 }).then(() => undefined, (e: unknown) => e as { code?: string; message?: string })
  t.equal(err?.code, 'ASYA_ERR_TRANSPORT_QUEUE_MISMATCH')
  t.match(err?.message, new RegExp(`RedrivePolicy sends dead letters to ${fArn}`), 'names what it cannot change')
  t.notMatch(err?.message, /VisibilityTimeout/, 'and only that')
  const oUrl = (await client.send(new GetQueueUrlCommand({ QueueName: `asya-${other}` }))).QueueUrl
  const o = (await client.send(new GetQueueAttributesCommand({ QueueUrl: oUrl, AttributeNames: ['All'] }))).Attributes ?? {}
  t.equal(JSON.parse(o.RedrivePolicy ?? '{}').deadLetterTargetArn, fArn, "the operator's redrive target is kept")
  t.equal(o.VisibilityTimeout, '120', 'the safe change was still made')
})

t.test('SQS attribute planning: what is set and what is refused', async (t) => {
  const ours = JSON.stringify({ deadLetterTargetArn: 'arn:aws:sqs:r:1:asya-a-dlq', maxReceiveCount: 5 })
  t.same(planSqsAttributes({}, { RedrivePolicy: ours, VisibilityTimeout: '600' }), { set: { RedrivePolicy: ours, VisibilityTimeout: '600' }, cannot: [] }, 'missing: set')
  t.same(planSqsAttributes({ RedrivePolicy: ours, VisibilityTimeout: '600' }, { RedrivePolicy: ours, VisibilityTimeout: '600' }), { set: {}, cannot: [] }, 'equal: nothing')
  t.same(planSqsAttributes({ RedrivePolicy: JSON.stringify({ deadLetterTargetArn: 'arn:aws:sqs:r:1:asya-a-dlq', maxReceiveCount: '5' }) }, { RedrivePolicy: ours }).set, {}, 'a count SQS returns as a string is equal')
  t.same(Object.keys(planSqsAttributes({ RedrivePolicy: JSON.stringify({ deadLetterTargetArn: 'arn:aws:sqs:r:1:asya-a-dlq', maxReceiveCount: 3 }) }, { RedrivePolicy: ours }).set), ['RedrivePolicy'], 'our DLQ, other count: set')
  t.match(planSqsAttributes({ RedrivePolicy: JSON.stringify({ deadLetterTargetArn: 'arn:x', maxReceiveCount: 5 }) }, { RedrivePolicy: ours }).cannot, [/arn:x/], 'another DLQ: refused')
  t.match(planSqsAttributes({ MessageRetentionPeriod: '1209600' }, { MessageRetentionPeriod: '345600' }).cannot, [/shortening/], 'shorter retention: refused')
  t.same(planSqsAttributes({ MessageRetentionPeriod: '345600' }, { MessageRetentionPeriod: '1209600' }).set, { MessageRetentionPeriod: '1209600' }, 'longer retention: set')
  t.match(planSqsAttributes({}, { FifoQueue: 'true' }).cannot, [/FifoQueue/])
  t.same([sqsVisibilityFor(300), sqsVisibilityFor(5), sqsVisibilityFor(100_000)], [600, 30, 43_200], 'visibility: 2 × timeout within SQS limits')
})

t.test('ASYA_AWS_ACCOUNT_ID: never a made-up default; unset, KEDA gets the queue URL SQS returned; malformed fails the start', async (t) => {
  const { readControllerTransports, readControllerSettings } = await import('../../src/controller/config.js')
  const { createController } = await import('../../src/controller/setup.js')
  const { Registry } = await import('prom-client')
  t.equal(readControllerTransports({ ASYA_TRANSPORT: 'sqs', ASYA_AWS_REGION: 'us-east-1' }).sqs?.accountId, undefined, 'unset stays unset')
  t.equal(readControllerTransports({ ASYA_TRANSPORT: 'sqs', ASYA_AWS_REGION: 'us-east-1', ASYA_AWS_ACCOUNT_ID: '123456789012' }).sqs?.accountId, '123456789012')
  t.throws(() => readControllerTransports({ ASYA_TRANSPORT: 'sqs', ASYA_AWS_REGION: 'us-east-1', ASYA_AWS_ACCOUNT_ID: 'prod' }), { code: 'ASYA_ERR_CONFIG_INVALID', message: /ASYA_AWS_ACCOUNT_ID/ })

  // The SDK's default credential chain, as in the system process (fauxqs accepts any).
  process.env.AWS_ACCESS_KEY_ID ??= 'test'
  process.env.AWS_SECRET_ACCESS_KEY ??= 'test'
  const transports = readControllerTransports({ ASYA_TRANSPORT: 'sqs', ASYA_AWS_REGION: 'us-east-1', ASYA_SQS_ENDPOINT: sqsServer.address })
  const handle = createController({
    kubeConfig: env.kube.kubeConfig,
    transports,
    settings: { ...readControllerSettings({ ASYA_LEADER_ELECTION: 'false' }, 'asya-system'), resyncMs: 60_000 },
    runtimeScript: '# runtime\n',
    registry: new Registry(),
    logger: silentLogger,
  })
  t.teardown(() => handle.close())
  handle.controller.start()
  const ns = rid('ns')
  const actor = rid('a')
  await env.apis.apps.createNamespacedDeployment({ namespace: ns, body: deployment(ns, 'acct', actor) })
  await status(ns, 'acct', 'Ready')
  const url = (await client.send(new GetQueueUrlCommand({ QueueName: `asya-${actor}` }))).QueueUrl
  const so = await getCustom(env.apis, ns, 'scaledobjects', 'acct')
  t.equal(so?.spec.triggers[0].metadata.queueURL, url, 'the ScaledObject polls the URL SQS gave for the queue')
})
