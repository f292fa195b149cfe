import t from 'tap'
import { WorkQueue } from '../../src/controller/work-queue.js'
import { buildScaledObject, buildTriggerAuth, matches, nameProblems, type ScalerConfig, type WorkloadRef } from '../../src/controller/keda.js'
import { parseWorkloadAnnotations } from '../../src/annotations.js'
import { actorOwner } from '../../src/controller/workload.js'
import { amqpUrl } from '../../src/transport/rabbitmq-transport.js'
import { readControllerTransports } from '../../src/controller/config.js'
import { natsScalerConfig } from '../../src/controller/setup.js'

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

t.test('ScaledObject for NATS: nats-jetstream trigger from the system env; a credentials Secret moves the monitoring endpoint (and the account, with its key) into a TriggerAuthentication', async (t) => {
  const scalerOf = (env: Record<string, string>): ScalerConfig => {
    const nats = readControllerTransports({ ASYA_TRANSPORT: 'nats', ASYA_NATS_URL: 'nats://nats.nats.svc:4222', ...env }).nats
    if (!nats) throw new Error('no NATS settings')
    return { transport: 'nats', nats: natsScalerConfig(nats) }
  }
  const plain = scalerOf({ ASYA_NATS_ACCOUNT: 'APP' })
  const trig = (buildScaledObject(ref, 'echo-actor', scaling, plain).spec as Record<string, any>).triggers[0]
  t.same(trig, {
    type: 'nats-jetstream',
    metadata: { natsServerMonitoringEndpoint: 'nats.nats.svc:8222', account: 'APP', stream: 'ASYA', consumer: 'asya-echo-actor', lagThreshold: '5', useHttps: 'false' },
  })
  t.equal(buildTriggerAuth(ref, 'echo-actor', plain), undefined, 'no Secret: no TriggerAuthentication')

  // The user Secret of the sidecars doubles as the monitoring Secret unless another one is named.
  const withUser = scalerOf({ ASYA_NATS_CREDENTIALS_SECRET: 'asya-nats' })
  const so = buildScaledObject(ref, 'echo-actor', scaling, withUser).spec as Record<string, any>
  t.equal(so.triggers[0].metadata.natsServerMonitoringEndpoint, undefined, 'the endpoint is not in the ScaledObject')
  t.equal(so.triggers[0].metadata.account, '$G', 'the account stays in the trigger without an account key')
  t.same(so.triggers[0].authenticationRef, { name: 'echo-trigger-auth' })
  t.same(buildTriggerAuth(ref, 'echo-actor', withUser)?.spec, { secretTargetRef: [{ parameter: 'natsServerMonitoringEndpoint', name: 'asya-nats', key: 'natsServerMonitoringEndpoint' }] })

  const separate = scalerOf({
    ASYA_NATS_CREDENTIALS_SECRET: 'asya-nats',
    ASYA_NATS_MONITORING_SECRET: 'nats-monitoring',
    ASYA_NATS_MONITORING_SECRET_ENDPOINT_KEY: 'endpoint',
    ASYA_NATS_MONITORING_SECRET_ACCOUNT_KEY: 'account',
  })
  const meta = (buildScaledObject(ref, 'echo-actor', scaling, separate).spec as Record<string, any>).triggers[0].metadata
  t.notOk('natsServerMonitoringEndpoint' in meta || 'account' in meta, 'endpoint and account both from the Secret')
  const ta = buildTriggerAuth(ref, 'echo-actor', separate)
  t.equal(ta?.kind, 'TriggerAuthentication')
  t.equal(ta?.metadata.name, 'echo-trigger-auth')
  t.equal(ta?.metadata.ownerReferences?.[0]?.name, 'echo', 'owned by the workload (goes with it)')
  t.same(ta?.spec, {
    secretTargetRef: [
      { parameter: 'natsServerMonitoringEndpoint', name: 'nats-monitoring', key: 'endpoint' },
      { parameter: 'account', name: 'nats-monitoring', key: 'account' },
    ],
  })
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
  const d = parseWorkloadAnnotations({}, {}, 'rabbitmq')
  t.same(d.value, { transport: 'rabbitmq', scaling: 'keda', minReplicas: 0, maxReplicas: 50, queueLength: 5, pollingInterval: 10, cooldownPeriod: 60, queueRetention: 'retain' })
  const v = parseWorkloadAnnotations({ 'asya.sh/max-replicas': '3', 'asya.sh/scaling': 'off', 'asya.sh/queue-retention': 'delete' }, { 'asya.sh/transport': 'sqs' }, 'rabbitmq')
  t.equal(v.value?.maxReplicas, 3)
  t.equal(v.value?.transport, 'sqs')
  t.equal(v.value?.scaling, 'off')
  const bad = parseWorkloadAnnotations({ 'asya.sh/max-replicas': 'many', 'asya.sh/queue-retention': 'forever' }, {}, 'rabbitmq')
  t.equal(bad.value, undefined)
  t.equal(bad.problems.length, 2)
  t.match(bad.problems[0]?.message, /asya\.sh\/max-replicas/)
  t.match(bad.problems[1]?.message, /asya\.sh\/queue-retention.*retain, delete/)
  t.match(parseWorkloadAnnotations({ 'asya.sh/min-replicas': '5', 'asya.sh/max-replicas': '2' }, {}, 'rabbitmq').problems[0]?.message, /min-replicas/)
})

t.test('actor owner: oldest creationTimestamp wins, then name; deleting workloads never win', async (t) => {
  const mk = (name: string, ts: string, deleting = false) => ({
    kind: 'Deployment' as const,
    workload: { metadata: { name, creationTimestamp: new Date(ts), ...(deleting ? { deletionTimestamp: new Date() } : {}) } },
  })
  t.equal(actorOwner([mk('b', '2024-01-02'), mk('a', '2024-01-03')])?.workload.metadata?.name, 'b')
  t.equal(actorOwner([mk('b', '2024-01-02'), mk('a', '2024-01-02')])?.workload.metadata?.name, 'a')
  t.equal(actorOwner([mk('b', '2024-01-01', true), mk('a', '2024-01-02')])?.workload.metadata?.name, 'a')
  // creationTimestamp has one-second resolution: in a tie the workload already wired keeps the actor.
  const wiredAs = (name: string, ts: string, actor: string, wired?: string) => ({
    kind: 'Deployment' as const,
    workload: {
      metadata: { name, creationTimestamp: new Date(ts), ...(wired ? { annotations: { 'asya.sh/wired': wired } } : {}) },
      spec: { selector: {}, template: { metadata: { labels: { 'asya.sh/actor': actor } } } },
    },
  })
  t.equal(actorOwner([wiredAs('a', '2024-01-02', 'x'), wiredAs('b', '2024-01-02', 'x', 'rabbitmq:x')])?.workload.metadata?.name, 'b', 'tie: the wired one wins')
  t.equal(actorOwner([wiredAs('b', '2024-01-02', 'x', 'rabbitmq:x'), wiredAs('a', '2024-01-02', 'x')])?.workload.metadata?.name, 'b', 'in either order')
  t.equal(actorOwner([wiredAs('a', '2024-01-02', 'x'), wiredAs('b', '2024-01-02', 'x', 'rabbitmq:y')])?.workload.metadata?.name, 'a', 'wired for another actor is no claim')
  t.equal(actorOwner([wiredAs('b', '2024-01-01', 'x'), wiredAs('a', '2024-01-02', 'x', 'rabbitmq:x')])?.workload.metadata?.name, 'b', 'older still wins')
})

t.test('AMQP URL escapes credentials', async (t) => {
  t.equal(amqpUrl({ host: 'h', port: 5672, vhost: '/', username: 'u@x', password: 'p:/#' }), 'amqp://u%40x:p%3A%2F%23@h:5672/%2F')
})
