/**
 * `asya actors`, `asya actors describe` and `asya queues` against the Kubernetes API test server,
 * the real controller (which creates queues, ScaledObjects, Events and asya.sh/status), real
 * RabbitMQ (with its management API for in-flight) and SQS on fauxqs.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { KubeConfig } from '@kubernetes/client-node'
import { Registry } from 'prom-client'
import t from 'tap'
import { parse as parseYaml } from 'yaml'
import { MERGE_PATCH } from '../../src/controller/kube.js'
import { RabbitMqTransport } from '../../src/transport/rabbitmq-transport.js'
import { SqsTransport } from '../../src/transport/sqs-transport.js'
import { type Delivery } from '../../src/transport/transport.js'
import { SidecarMetrics } from '../../sidecar/metrics.js'
import { AMQP_URL, deployment, rid, startEnv, waitFor, type Env } from '../controller/helpers.js'
import { RABBITMQ_MANAGEMENT } from '../support/rabbitmq.js'
import { SQS_TEST_CREDENTIALS, startSqsServer, type SqsTestServer } from '../support/sqs-server.js'
import { asya, rows, writeKubeconfig } from './helpers.js'
import { HEADER } from '../../src/names.js'

let env: Env
let sqs: SqsTestServer
let cliEnv: NodeJS.ProcessEnv
const ns = rid('team')
const other = rid('other')
const cls = rid('cls')
const jdg = rid('jdg')
const bad = rid('bad')
const held: Delivery[] = []
let rabbit: RabbitMqTransport
let sqsTr: SqsTransport

t.before(async () => {
  env = await startEnv()
  sqs = await startSqsServer()
  const c = env.makeController()
  c.start()
  env.created.add(`asya-${cls}`).add(`asya-${cls}-dlq`)
  await env.apis.apps.createNamespacedDeployment({ namespace: ns, body: deployment(ns, 'classifier', cls, { 'asya.sh/max-replicas': '7' }, { 'asya.sh/handler': 'pipeline.Classifier.classify', 'asya.sh/timeout': '60' }) })
  await env.apis.apps.createNamespacedDeployment({ namespace: ns, body: deployment(ns, 'plain-web', undefined) })
  const sts = deployment(ns, 'judge', jdg, { 'asya.sh/scaling': 'off' }, { 'asya.sh/transport': 'sqs', 'asya.sh/handler': 'pipeline.judge', 'asya.sh/handler-mode': 'envelope' })
  await env.apis.apps.createNamespacedStatefulSet({ namespace: ns, body: { ...sts, kind: 'StatefulSet', spec: { ...sts.spec, serviceName: 'judge' } } as never })
  await env.apis.apps.createNamespacedDeployment({ namespace: other, body: deployment(other, 'broken', bad, {}, { 'asya.sh/timeout': 'never' }) })
  // What the Deployment controller reports: 1 of 2 replicas ready.
  await env.apis.apps.patchNamespacedDeploymentStatus({ namespace: ns, name: 'classifier', body: { status: { replicas: 2, readyReplicas: 1 } } }, MERGE_PATCH)
  await env.apis.apps.patchNamespacedDeployment({ namespace: ns, name: 'classifier', body: { spec: { replicas: 2 } } }, MERGE_PATCH)
  await waitFor('classifier Ready', async () => (await env.apis.apps.readNamespacedDeployment({ namespace: ns, name: 'classifier' })).metadata?.annotations?.['asya.sh/status'] === 'Ready')

  rabbit = new RabbitMqTransport({ url: AMQP_URL, exchange: env.exchange })
  await rabbit.connect()
  for (let i = 0; i < 3; i++) await rabbit.publish(cls, Buffer.from(JSON.stringify({ id: `m${i}`, route: { actors: [cls], current: 0 }, payload: i })))
  await rabbit.publish(`${cls}-dlq`, Buffer.from(JSON.stringify({ id: 'dead-1', route: { actors: [cls], current: 0 }, payload: 1 })), { headers: { [HEADER.reason]: 'delivery_limit', [HEADER.error]: 'boom', [HEADER.attempts]: '5' } })
  // One delivery held unacked: in flight.
  await rabbit.consume(cls, (d) => void held.push(d), { prefetch: 1 })

  sqsTr = new SqsTransport({ region: sqs.region, endpoint: sqs.endpoint, credentials: SQS_TEST_CREDENTIALS, waitTimeSeconds: 1, visibilityTimeoutSeconds: 30 })
  await sqsTr.connect()
  await sqsTr.ensureQueue(jdg)
  await sqsTr.publish(jdg, Buffer.from('{"id":"s1","route":{"actors":["x"],"current":0},"payload":null}'))

  cliEnv = {
    HOME: '/nonexistent',
    KUBECONFIG: writeKubeconfig(env.kube.kubeConfig),
    ASYA_RABBITMQ_URL: AMQP_URL,
    ASYA_RABBITMQ_EXCHANGE: env.exchange,
    ASYA_RABBITMQ_MANAGEMENT_URL: RABBITMQ_MANAGEMENT,
    ASYA_AWS_REGION: sqs.region,
    ASYA_SQS_ENDPOINT: sqs.endpoint,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
  }
})

t.teardown(async () => {
  for (const d of held) await d.ack().catch(() => undefined)
  await rabbit?.close()
  await sqsTr?.deleteQueue(jdg).catch(() => undefined)
  await sqsTr?.close()
  await sqs?.stop()
  await env?.close()
})

t.test('asya actors: one row per labelled workload with replicas, queue depth, in-flight, DLQ and status', async (t) => {
  // RabbitMQ's management API refreshes its counters every few seconds.
  const r = await waitFor('in-flight 1 reported', async () => {
    const r = await asya(['actors', '-n', ns], cliEnv)
    return r.code === 0 && rows(r.stdout).find((row) => row[0] === cls)?.[5] === '1' ? r : undefined
  }, 30_000)
  const table = rows(r.stdout)
  t.same(table[0], ['ACTOR', 'WORKLOAD', 'TRANSPORT', 'READY', 'QUEUE', 'IN-FLIGHT', 'DLQ', 'STATUS'])
  t.same(table.find((row) => row[0] === cls), [cls, 'deployment/classifier', 'rabbitmq', '1/2', '2', '1', '1', 'Ready'])
  const judge = table.find((row) => row[0] === jdg)
  t.same(judge?.slice(0, 6), [jdg, 'statefulset/judge', 'sqs', '0/0', '1', '0'], 'SQS actor beside the RabbitMQ one')
  t.equal(table.length, 3, 'the unlabelled Deployment is not an actor; other namespaces are not shown')
  t.notOk(r.stdout.includes(bad))

  const wide = rows((await asya(['actors', '-n', ns, '-o', 'wide'], cliEnv)).stdout)
  t.same(wide[0]?.slice(-4), ['CONSUMERS', 'HANDLER', 'MODE', 'SCALING'])
  t.same(wide.find((row) => row[0] === cls)?.slice(-4), ['1', 'pipeline.Classifier.classify', 'payload', '0-7'])
  t.same(wide.find((row) => row[0] === jdg)?.slice(-4), ['-', 'pipeline.judge', 'envelope', 'off'], 'SQS has no consumer count: -')

  const all = await asya(['actors', '-A', '--no-queues'], cliEnv)
  t.equal(all.code, 0)
  const allRows = rows(all.stdout)
  t.equal(allRows[0]?.[0], 'NAMESPACE')
  t.ok(allRows.some((row) => row[0] === other && row[1] === bad), 'every namespace with -A')
  t.ok(allRows.every((row, i) => i === 0 || row[5] === '-'), '--no-queues: no broker numbers')
})

t.test('asya actors -o json / yaml for scripts', async (t) => {
  const j = await asya(['actors', '-n', ns, '-o', 'json'], cliEnv)
  t.equal(j.code, 0, j.stderr)
  const doc = JSON.parse(j.stdout) as { kind: string; items: Array<Record<string, any>> }
  t.equal(doc.kind, 'ActorList')
  const c = doc.items.find((i) => i.actor === cls)
  t.match(c, { namespace: ns, workload: { kind: 'Deployment', name: 'classifier' }, transport: 'rabbitmq', replicas: { ready: 1, desired: 2 }, queue: { name: `asya-${cls}`, messages: 2, consumers: 1 }, dlq: { name: `asya-${cls}-dlq`, messages: 1 }, status: 'Ready' })
  const y = await asya(['actors', '-n', ns, '-o', 'yaml'], cliEnv)
  t.same((parseYaml(y.stdout) as typeof doc).items.map((i) => i.actor).sort(), doc.items.map((i) => i.actor).sort())
  const badFormat = await asya(['actors', '-o', 'xml'], cliEnv)
  t.equal(badFormat.code, 2, 'unknown -o is a usage error')
  t.match(badFormat.stderr, /Allowed choices are wide, json, yaml/)
})

t.test('asya actors describe: effective annotations, ScaledObject, Events, sidecar metrics', async (t) => {
  // The sidecar's own metric set, served where the pod proxy forwards.
  const pods = await env.apis.core.listNamespacedPod({ namespace: ns, labelSelector: 'app=classifier' })
  t.equal(pods.items.length, 2)
  const metrics = new SidecarMetrics('asya_actor', new Registry())
  metrics.received.inc({ queue: `asya-${cls}`, transport: 'rabbitmq' }, 12)
  metrics.processed.inc({ queue: `asya-${cls}`, status: 'success' }, 10)
  metrics.processed.inc({ queue: `asya-${cls}`, status: 'error' }, 2)
  metrics.processingDuration.observe({ queue: `asya-${cls}` }, 0.02)
  metrics.processingDuration.observe({ queue: `asya-${cls}` }, 0.04)
  const server = createServer(async (_req, res) => {
    res.writeHead(200, { 'content-type': metrics.registry.contentType })
    res.end(await metrics.registry.metrics())
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  const first = pods.items[0]?.metadata?.name as string
  env.kube.setPodHost(ns, first, 8080, `127.0.0.1:${(server.address() as AddressInfo).port}`)

  const r = await asya(['actors', 'describe', cls, '-n', ns], cliEnv)
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, new RegExp(`Name:\\s+${cls}`))
  t.match(r.stdout, /Workload:\s+Deployment\/classifier/)
  t.match(r.stdout, /Replicas:\s+1\/2 ready/)
  t.match(r.stdout, new RegExp(`Queue:\\s+asya-${cls}: 2 messages, \\d in flight, 1 consumers`))
  t.match(r.stdout, /asya\.sh\/timeout\s+60\s+pod template/, 'set on the pod template')
  t.match(r.stdout, /asya\.sh\/max-replicas\s+7\s+workload/, 'set on the workload')
  t.match(r.stdout, /asya\.sh\/min-replicas\s+0\s+default/, 'default filled in')
  t.match(r.stdout, /asya\.sh\/retry-backoff\s+1s\s+default/)
  t.match(r.stdout, /asya\.sh\/transport\s+rabbitmq\s+default/)
  t.match(r.stdout, /Replicas:\s+0 to 7/, 'ScaledObject written by the controller')
  t.match(r.stdout, new RegExp(`Trigger:\\s+rabbitmq .*queueName=asya-${cls}`))
  t.match(r.stdout, /Events:\n(?!\s+<none>)/, 'the controller\'s Events are listed')
  t.match(r.stdout, new RegExp(`${first}: received 12, processed success 10, error 2, .*mean processing 30 ms`), 'metrics through the pod proxy')
  t.match(r.stdout, /: pod proxy answered HTTP 503/, 'a pod without metrics is reported, not fatal')

  const broken = await asya(['actors', 'describe', bad, '-n', other, '--no-queues', '--no-metrics'], cliEnv)
  t.equal(broken.code, 0)
  t.match(broken.stdout, /asya\.sh\/timeout\s+never\s+invalid: annotation asya\.sh\/timeout="never" is invalid: expected/, 'invalid values are named')

  const json = JSON.parse((await asya(['actors', 'describe', jdg, '-n', ns, '-o', 'json', '--no-metrics'], cliEnv)).stdout) as Record<string, any>
  t.equal(json.actor.transport, 'sqs')
  t.ok(json.annotations.some((a: { annotation: string; value: string }) => a.annotation === 'asya.sh/handler-mode' && a.value === 'envelope'))
  t.match(await asya(['actors', 'describe', jdg, '-n', ns, '--no-metrics', '--no-queues'], cliEnv), { stdout: /none \(asya\.sh\/scaling: off\)/ })

  const missing = await asya(['actors', 'describe', 'nope', '-n', ns], cliEnv)
  t.equal(missing.code, 1)
  t.match(missing.stderr, /actor "nope" not found in namespace .*add -n NAMESPACE or -A/)
})

t.test('asya queues: depth, in-flight, consumers, DLQ on every transport; broker-only mode', async (t) => {
  const r = await asya(['queues', '-n', ns, '-o', 'wide'], cliEnv)
  t.equal(r.code, 0, r.stderr)
  const table = rows(r.stdout)
  t.same(table[0], ['QUEUE', 'TRANSPORT', 'MESSAGES', 'IN-FLIGHT', 'CONSUMERS', 'DLQ', 'WORKLOADS'])
  t.same(table.find((row) => row[0] === `asya-${cls}`)?.slice(0, 6), [`asya-${cls}`, 'rabbitmq', '2', '1', '1', '1'])
  t.same(table.find((row) => row[0] === `asya-${cls}`)?.[6], `${ns}/deployment/classifier`)
  t.same(table.find((row) => row[0] === `asya-${jdg}`)?.slice(0, 5), [`asya-${jdg}`, 'sqs', '1', '0', '-'])
  t.ok(table.some((row) => row[0] === 'asya-happy-end'), 'end actors are listed')
  t.match(r.stderr, /asya-happy-end.*the controller creates it/, 'a missing queue is explained on stderr')

  const direct = await asya(['queues', cls, '-o', 'json'], { ...cliEnv, KUBECONFIG: '/nonexistent' })
  t.equal(direct.code, 0, 'named actors need no cluster')
  t.match(JSON.parse(direct.stdout), { kind: 'QueueList', items: [{ queue: `asya-${cls}`, messages: 2, consumers: 1, dlq: { messages: 1 } }] })
})

t.test('errors name the fix', async (t) => {
  const noKube = await asya(['actors'], { HOME: '/nonexistent' })
  t.equal(noKube.code, 2)
  t.match(noKube.stderr, /no kubeconfig found: pass --kubeconfig FILE, set KUBECONFIG/)
  const ctx = await asya(['actors', '--context', 'prod'], cliEnv)
  t.equal(ctx.code, 2)
  t.match(ctx.stderr, /context "prod" is not in the kubeconfig; contexts: /)
  const both = await asya(['actors', '-n', 'a', '-A'], cliEnv)
  t.equal(both.code, 2)
  const refused = await asya(['queues', cls, '--rabbitmq-url', 'amqp://guest:secret@127.0.0.1:1', '--broker-timeout', '1'], cliEnv)
  t.equal(refused.code, 0, 'a listing still prints')
  t.match(refused.stderr, /cannot connect to RabbitMQ at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:1 within 1 s .*--rabbitmq-url/)
  t.notOk(refused.stderr.includes('secret'), 'credentials never printed')
  const down = await asya(['actors', '-n', ns, '--no-queues'], { ...cliEnv, KUBECONFIG: writeKubeconfigFor('http://127.0.0.1:1') })
  t.equal(down.code, 1)
  t.match(down.stderr, /cannot reach the Kubernetes API at http:\/\/127\.0\.0\.1:1 .*check --context \/ --kubeconfig/)
})

t.test('the user\'s kubeconfig and context, as kubectl finds them: --kubeconfig, KUBECONFIG (merged), --context and its namespace', async (t) => {
  // Two contexts: the current one points at nothing; "team" is the test cluster with namespace ns.
  const kc = new KubeConfig()
  kc.loadFromOptions({
    clusters: [{ name: 'down', server: 'http://127.0.0.1:1', skipTLSVerify: true }, { name: 'up', server: env.kube.url, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'asya-test-token' }],
    contexts: [{ name: 'dead', cluster: 'down', user: 'u' }, { name: 'team', cluster: 'up', user: 'u', namespace: ns }],
    currentContext: 'dead',
  })
  const file = writeKubeconfig(kc)
  const noEnv = { HOME: '/nonexistent' }
  const current = await asya(['actors', '--no-queues', '--kubeconfig', file], noEnv)
  t.equal(current.code, 1, 'the current context is used by default')
  t.match(current.stderr, /cannot reach the Kubernetes API at http:\/\/127\.0\.0\.1:1 \(context dead\)/)
  const team = await asya(['actors', '--no-queues', '--kubeconfig', file, '--context', 'team'], noEnv)
  t.equal(team.code, 0, team.stderr)
  t.same(rows(team.stdout).map((r) => r[0]).sort(), ['ACTOR', cls, jdg].sort(), "the context's namespace without -n")
  // KUBECONFIG lists several files (kubectl's rule): merged, so a context of the second file can be picked.
  const merged = await asya(['actors', '--no-queues', '--context', 'asya-test', '-n', ns], { ...noEnv, KUBECONFIG: `${file}:${writeKubeconfig(env.kube.kubeConfig)}` })
  t.equal(merged.code, 0, merged.stderr)
  t.ok(rows(merged.stdout).some((r) => r[0] === cls), 'a context from the second file')
})

function writeKubeconfigFor(server: string): string {
  const kc = env.kube.kubeConfig
  const text = kc.exportConfig().replace(env.kube.url, server)
  const dir = mkdtempSync('/tmp/asya-cli-kube-')
  writeFileSync(`${dir}/config`, text)
  return `${dir}/config`
}
