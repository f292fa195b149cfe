import t from 'tap'
import { CreateQueueCommand, GetQueueAttributesCommand, GetQueueUrlCommand, ListQueueTagsCommand, SQSClient } from '@aws-sdk/client-sqs'
import { startFauxqs, type FauxqsServer } from 'fauxqs'
import { SqsQueues } from '../../src/controller/sqs-queues.js'
import { annotations, deployment, getCustom, rid, silentLogger, startEnv, waitFor, type Env } from './helpers.js'

let env: Env
let sqsServer: FauxqsServer
let client: SQSClient
t.before(async () => {
  env = await startEnv()
  sqsServer = await startFauxqs({ port: 0, logger: false })
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

t.test('SQS: an existing queue with other attributes is a QueueError, left as is', async (t) => {
  const ns = rid('ns')
  const actor = rid('a')
  await client.send(new CreateQueueCommand({ QueueName: `asya-${actor}`, Attributes: { VisibilityTimeout: '77' } }))
  const c = sqsController()
  c.start()
  await env.apis.apps.createNamespacedDeployment({ namespace: ns, body: deployment(ns, 'sq2', actor) })
  const a = await status(ns, 'sq2', 'QueueError')
  t.match(a['asya.sh/status-message'], /ASYA_ERR_TRANSPORT_QUEUE_MISMATCH/)
  const url = (await client.send(new GetQueueUrlCommand({ QueueName: `asya-${actor}` }))).QueueUrl
  const attrs = await client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['VisibilityTimeout'] }))
  t.equal(attrs.Attributes?.VisibilityTimeout, '77', 'existing queue untouched')
  await c.stop()
})
