/**
 * Controller cold start: N labelled Deployments exist, the controller starts and wires every one
 * (RabbitMQ queue + DLQ, runtime ConfigMap, ScaledObject, TriggerAuthentication, status). Baseline
 * in the same run: the time to merely create the N Deployments through the same API server (the
 * bare API round-trip cost). Target: <= 10 s for 200 actors.
 */
import { randomUUID } from 'node:crypto'
import amqp from 'amqplib'
import { Registry } from 'prom-client'
import { Controller } from '../src/controller/controller.js'
import { makeKubeApis } from '../src/controller/kube.js'
import { RabbitQueues } from '../src/controller/rabbitmq-queues.js'
import { declareActorTopology as rabbitDeclare } from '../src/transport/rabbitmq-topology.js'
import { createLogger } from '../src/logger.js'
import { deployment } from '../test/controller/helpers.js'
import { startKubeApiServer } from '../test/k8s/kube-api-server.js'

const N = Number(process.env.BENCH_ACTORS ?? 200)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16)
const AMQP_URL = process.env.ASYA_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
const log = (m: string): void => void process.stderr.write(m + '\n')

const kube = await startKubeApiServer({ autoCreateNamespaces: true })
const apis = makeKubeApis(kube.kubeConfig)
const run = randomUUID().slice(0, 6)
const ns = `bench-${run}`
const exchange = `asya-bench-${run}`
const actors = Array.from({ length: N }, (_, i) => `b${run}-${i}`)

// Baseline: create the N Deployments (N sequential-ish API writes, 16 in flight like the controller).
let t0 = performance.now()
for (let i = 0; i < N; i += CONCURRENCY) {
  await Promise.all(
    actors.slice(i, i + CONCURRENCY).map((a) => apis.apps.createNamespacedDeployment({ namespace: ns, body: deployment(ns, a, a, { 'asya.sh/max-replicas': '5' }) })),
  )
}
const baselineMs = performance.now() - t0
log(`baseline: created ${N} Deployments in ${baselineMs.toFixed(0)} ms`)

const queues = new RabbitQueues({ url: AMQP_URL, exchange, declare: rabbitDeclare, logger: createLogger('bench', { level: 'silent' }) })
const controller = new Controller({
  kubeConfig: kube.kubeConfig,
  namespaces: [],
  defaultTransport: 'rabbitmq',
  concurrency: CONCURRENCY,
  queues: { rabbitmq: queues },
  scaler: () => ({
    transport: 'rabbitmq',
    rabbitmq: { managementUrl: 'http://rabbitmq:15672', vhost: '/', credentialSecret: { name: 'asya-rabbitmq', usernameKey: 'username', passwordKey: 'password' } },
  }),
  runtimeScript: '# runtime\n',
  registry: new Registry(),
  logger: createLogger('bench', { level: 'silent' }),
})
const mark = kube.requestLog.length
t0 = performance.now()
controller.start()
for (;;) {
  await controller.idle()
  const list = await apis.apps.listNamespacedDeployment({ namespace: ns })
  const ready = list.items.filter((d) => d.metadata?.annotations?.['asya.sh/status'] === 'Ready').length
  if (ready === N) break
  await new Promise((r) => setTimeout(r, 20))
}
const wiredMs = performance.now() - t0
const reqs = kube.requestLog.slice(mark).filter((e) => e.method !== 'WATCH' && !(e.method === 'GET' && e.path.endsWith(`/namespaces/${ns}/deployments`)))
const writes = reqs.filter((e) => e.method !== 'GET').length
log(`wired ${N} actors in ${wiredMs.toFixed(0)} ms, ${reqs.length} API requests`)

// Second pass (resync of an unchanged cluster) must write nothing.
const mark2 = kube.requestLog.length
t0 = performance.now()
controller.resyncNow()
await controller.idle()
const resyncMs = performance.now() - t0
const resyncWrites = kube.requestLog.slice(mark2).filter((e) => !['GET', 'WATCH'].includes(e.method)).length

await controller.stop()
const conn = await amqp.connect(AMQP_URL)
const ch = await conn.createChannel()
for (const a of actors) {
  await ch.deleteQueue(`asya-${a}`)
  await ch.deleteQueue(`asya-${a}-dlq`)
}
await ch.deleteExchange(exchange)
await conn.close()
await queues.close()
await kube.close()

process.stdout.write(`## Controller: cold-start wiring of ${N} actors

Method: ${N} Deployments labelled \`asya.sh/actor\` exist in one namespace of the Kubernetes API test
server (in-process, HTTP); the controller starts (no leader election) and reconciles all of them
with concurrency ${CONCURRENCY}: RabbitMQ queue + DLQ + binding on the local broker, the
\`asya-runtime\` ConfigMap, ScaledObject, TriggerAuthentication, status annotation and Event. Timed
from \`start()\` until every Deployment shows \`asya.sh/status: Ready\`. Baseline in the same run:
creating the ${N} Deployments through the same API server, ${CONCURRENCY} in flight (the bare API
write cost). Reproduce: \`npm run bench -- controller\`.

| measure | value |
|---|---|
| baseline: create ${N} Deployments | ${baselineMs.toFixed(0)} ms (${(baselineMs / N).toFixed(2)} ms each) |
| cold start: wire ${N} actors | **${wiredMs.toFixed(0)} ms** (${(wiredMs / N).toFixed(2)} ms per actor, ${(wiredMs / baselineMs).toFixed(1)} × baseline) |
| API requests per actor (cold start) | ${(reqs.length / N).toFixed(2)} (${(writes / N).toFixed(2)} writes) |
| resync of the unchanged ${N} | ${resyncMs.toFixed(0)} ms, ${resyncWrites} writes |
| target | ≤ 10 000 ms for 200 actors |
`)
