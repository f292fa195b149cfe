import t from 'tap'
import { WorkQueue } from '../../src/controller/work-queue.js'
import { buildScaledObject, buildTriggerAuth, matches, nameProblems, type ScalerConfig, type WorkloadRef } from '../../src/controller/keda.js'
import { readWorkloadSettings } from '../../src/controller/settings.js'
import { actorOwner } from '../../src/controller/workload.js'
import { amqpUrl } from '../../src/transport/rabbitmq-transport.js'

const ref: WorkloadRef = { kind: 'Deployment', namespace: 'ns1', name: 'echo', uid: 'u-1' }
const scaling = { minReplicas: 0, maxReplicas: 50, queueLength: 5, pollingInterval: 10, cooldownPeriod: 60 }
const rabbit: ScalerConfig = {
  transport: 'rabbitmq',
  rabbitmq: { managementUrl: 'http://rabbitmq.asya-system:15672', vhost: '/', credentialSecret: { name: 'rmq', usernameKey: 'username', passwordKey: 'password' } },
}

t.test('work queue serialises a key, reruns it when added while running, and bounds concurrency', async (t) => {
  let running = 0
  let maxRunning = 0
  const runs: string[] = []
  let release: (() => void) | undefined
  const gate = new Promise<void>((r) => (release = r))
  const q = new WorkQueue(
    async (key) => {
      running++
      maxRunning = Math.max(maxRunning, running)
      runs.push(key)
      if (key === 'a' && runs.filter((k) => k === 'a').length === 1) await gate
      await new Promise((r) => setTimeout(r, 5))
      running--
    },
    { concurrency: 2 },
  )
  q.add('a')
  q.add('a') // deduplicated while queued... (already running: marks dirty)
  q.add('b')
  q.add('c')
  q.add('d')
  await new Promise((r) => setTimeout(r, 20))
  q.add('a') // while 'a' runs: must run again afterwards, never concurrently
  release?.()
  await q.idle()
  t.equal(maxRunning, 2, 'never more than the concurrency limit')
  t.equal(runs.filter((k) => k === 'a').length, 2, 'a ran once more after the change that arrived while it ran')
  t.same(runs.filter((k) => k !== 'a').sort(), ['b', 'c', 'd'])
})

t.test('work queue retries a failing key with backoff until it succeeds', async (t) => {
  let attempts = 0
  const errors: number[] = []
  const q = new WorkQueue(
    async () => {
      attempts++
      if (attempts < 3) throw new Error('boom')
    },
    { backoff: { initialMs: 5, maxMs: 20 }, onError: (_k, _e, retry) => errors.push(retry) },
  )
  q.add('k')
  const deadline = Date.now() + 5000
  while (attempts < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
  await q.idle()
  t.equal(attempts, 3)
  t.same(errors, [1, 2], 'retry counter grows per consecutive failure')
  t.equal(q.failures('k'), 0, 'success resets the failure count')
  await q.stop()
})

t.test('ScaledObject for RabbitMQ: owner, target, limits, behaviour, http protocol trigger with auth', async (t) => {
  const so = buildScaledObject(ref, 'echo-actor', { ...scaling, minReplicas: 1, maxReplicas: 7, queueLength: 3 }, rabbit)
  t.equal(so.metadata.name, 'echo')
  t.same(so.metadata.ownerReferences, [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'echo', uid: 'u-1', controller: true, blockOwnerDeletion: true }])
  const spec = so.spec as Record<string, any>
  t.same(spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'echo' })
  t.equal(spec.minReplicaCount, 1)
  t.equal(spec.maxReplicaCount, 7)
  t.ok(spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds > 0)
  t.same(spec.triggers[0], {
    type: 'rabbitmq',
    metadata: { mode: 'QueueLength', value: '3', queueName: 'asya-echo-actor', protocol: 'http', host: 'http://rabbitmq.asya-system:15672', vhostName: '/' },
    authenticationRef: { name: 'echo-trigger-auth' },
  })
  const ta = buildTriggerAuth(ref, 'echo-actor', rabbit)
  t.equal(ta?.metadata.name, 'echo-trigger-auth')
  t.same((ta?.spec as Record<string, any>).secretTargetRef.map((r: { parameter: string }) => r.parameter), ['username', 'password'])
})

t.test('ScaledObject for SQS: aws-sqs-queue trigger with in-flight scaling; identity variants', async (t) => {
  const base = { region: 'eu-west-1', queueUrl: 'http://sqs.local/000000000000/asya-a', endpoint: 'http://sqs.local' }
  const op: ScalerConfig = { transport: 'sqs', sqs: { ...base, auth: { kind: 'operator' } } }
  const so = buildScaledObject(ref, 'a', scaling, op)
  const trig = (so.spec as Record<string, any>).triggers[0]
  t.equal(trig.type, 'aws-sqs-queue')
  t.same(trig.metadata, { queueURL: base.queueUrl, queueLength: '5', awsRegion: 'eu-west-1', scaleOnInFlight: 'true', awsEndpoint: 'http://sqs.local', identityOwner: 'operator' })
  t.equal(trig.authenticationRef, undefined, 'operator identity needs no TriggerAuthentication')
  t.equal(buildTriggerAuth(ref, 'a', op), undefined)
  const pod: ScalerConfig = { transport: 'sqs', sqs: { ...base, auth: { kind: 'pod' } } }
  t.same(buildTriggerAuth(ref, 'a', pod)?.spec, { podIdentity: { provider: 'aws' } })
})

t.test('matches() ignores server-added fields but sees spec drift', async (t) => {
  const so = buildScaledObject(ref, 'a', scaling, rabbit)
  const observed = JSON.parse(JSON.stringify(so))
  observed.metadata.resourceVersion = '12'
  observed.metadata.labels.extra = 'x'
  observed.status = { conditions: [] }
  t.ok(matches(so, observed))
  observed.spec.maxReplicaCount = 9
  t.notOk(matches(so, observed))
})

t.test('names longer than KEDA allows are reported, never truncated', async (t) => {
  t.same(nameProblems('ok'), [])
  const long = 'x'.repeat(64)
  t.match(nameProblems(long)[0], /at most 63/)
})

t.test('settings: defaults, values, and every invalid annotation named', async (t) => {
  const d = readWorkloadSettings({}, {}, 'rabbitmq')
  t.same(d.settings, { transport: 'rabbitmq', scaling: 'keda', minReplicas: 0, maxReplicas: 50, queueLength: 5, pollingInterval: 10, cooldownPeriod: 60, queueRetention: 'retain' })
  const v = readWorkloadSettings({ 'asya.sh/max-replicas': '3', 'asya.sh/scaling': 'off', 'asya.sh/queue-retention': 'delete' }, { 'asya.sh/transport': 'sqs' }, 'rabbitmq')
  t.equal(v.settings?.maxReplicas, 3)
  t.equal(v.settings?.transport, 'sqs')
  t.equal(v.settings?.scaling, 'off')
  const bad = readWorkloadSettings({ 'asya.sh/max-replicas': 'many', 'asya.sh/queue-retention': 'forever' }, {}, 'rabbitmq')
  t.equal(bad.settings, undefined)
  t.equal(bad.problems.length, 2)
  t.match(bad.problems[0], /asya\.sh\/max-replicas/)
  t.match(bad.problems[1], /asya\.sh\/queue-retention.*retain, delete/)
  t.match(readWorkloadSettings({ 'asya.sh/min-replicas': '5', 'asya.sh/max-replicas': '2' }, {}, 'rabbitmq').problems[0], /min-replicas/)
})

t.test('actor owner: oldest creationTimestamp wins, then name; deleting workloads never win', async (t) => {
  const mk = (name: string, ts: string, deleting = false) => ({
    kind: 'Deployment' as const,
    workload: { metadata: { name, creationTimestamp: new Date(ts), ...(deleting ? { deletionTimestamp: new Date() } : {}) } },
  })
  t.equal(actorOwner([mk('b', '2024-01-02'), mk('a', '2024-01-03')])?.workload.metadata?.name, 'b')
  t.equal(actorOwner([mk('b', '2024-01-02'), mk('a', '2024-01-02')])?.workload.metadata?.name, 'a')
  t.equal(actorOwner([mk('b', '2024-01-01', true), mk('a', '2024-01-02')])?.workload.metadata?.name, 'a')
})

t.test('AMQP URL escapes credentials', async (t) => {
  t.equal(amqpUrl({ host: 'h', port: 5672, vhost: '/', username: 'u@x', password: 'p:/#' }), 'amqp://u%40x:p%3A%2F%23@h:5672/%2F')
})
