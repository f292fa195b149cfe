/**
 * The env the webhook writes must be exactly what the sidecar reads (SPEC §5): the injected
 * container's env is fed to the real sidecar config reader, which rejects unknown-format values.
 */
import t from 'tap'
import { readSidecarConfig } from '../../sidecar/config.js'
import { injectPod } from '../../webhook/inject.js'
import { testConfig } from './fixtures.js'

interface EnvVar {
  name: string
  value?: string
  valueFrom?: { secretKeyRef?: { name: string; key: string } }
}
interface Container {
  name: string
  env?: EnvVar[]
  securityContext?: Record<string, unknown>
  restartPolicy?: string
  volumeMounts?: { name: string; mountPath: string }[]
}

function sidecarOf(actor: string, annotations: Record<string, string>, grace?: number): Container {
  const r = injectPod(
    {
      metadata: { labels: { 'asya.sh/actor': actor }, annotations: { 'asya.sh/handler': 'm.f', ...annotations } },
      spec: { containers: [{ name: 'asya-runtime', image: 'py' }], ...(grace !== undefined ? { terminationGracePeriodSeconds: grace } : {}) },
    },
    { config: testConfig, namespace: 'team-a' },
  )
  if (r.kind !== 'injected') throw new Error(`not injected: ${JSON.stringify(r)}`)
  const spec = r.pod.spec as { initContainers?: Container[]; containers: Container[] }
  const c = [...(spec.initContainers ?? []), ...spec.containers].find((x) => x.name === 'asya-sidecar')
  if (!c) throw new Error('no sidecar')
  return c
}

function envOf(c: Container): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const e of c.env ?? []) env[e.name] = e.value ?? `secret:${e.valueFrom?.secretKeyRef?.name}/${e.valueFrom?.secretKeyRef?.key}`
  return env
}

t.test('RabbitMQ actor: the sidecar accepts the injected env and reads the annotation values', async (t) => {
  const c = sidecarOf('cleaner', { 'asya.sh/timeout': '120', 'asya.sh/max-retries': '3', 'asya.sh/retry-backoff': '250ms' }, 60)
  const cfg = readSidecarConfig(envOf(c))
  t.equal(cfg.actorName, 'cleaner')
  t.equal(cfg.runtimeTimeoutMs, 120_000)
  t.equal(cfg.maxRetries, 3)
  t.equal(cfg.retryBackoffMs, 250)
  t.equal(cfg.isEndActor, false)
  t.equal(cfg.shutdownTimeoutMs, 55_000, 'grace period minus the margin')
  t.equal(cfg.socketDir, '/var/run/asya')
  t.equal(cfg.metricsPort, 8080)
  t.equal(cfg.transport.rabbitmq?.exchange, 'asya')
  const creds = (c.env ?? []).filter((e) => /USERNAME|PASSWORD/.test(e.name))
  t.same(creds.map((e) => [e.name, e.value, e.valueFrom?.secretKeyRef]), [
    ['ASYA_RABBITMQ_USERNAME', undefined, { name: 'asya-rabbitmq', key: 'username' }],
    ['ASYA_RABBITMQ_PASSWORD', undefined, { name: 'asya-rabbitmq', key: 'password' }],
  ], 'credentials only by secretKeyRef')
  t.same(c.securityContext, { runAsNonRoot: true, runAsUser: 65532, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } })
  t.equal(c.restartPolicy, 'Always', 'native sidecar')
  t.same(c.volumeMounts, [{ name: 'socket-dir', mountPath: '/var/run/asya' }])
})

t.test('SQS actor and end actors', async (t) => {
  const sqs = readSidecarConfig(envOf(sidecarOf('fetcher', { 'asya.sh/transport': 'sqs' })))
  t.equal(sqs.transport.sqs?.region, 'eu-west-1')
  t.equal(sqs.transport.sqs?.endpoint, 'http://fauxqs:4566')
  for (const end of ['happy-end', 'error-end']) {
    const c = sidecarOf(end, {})
    t.equal(readSidecarConfig(envOf(c)).isEndActor, true, `${end} is an end actor`)
    t.ok((c.env ?? []).some((e) => e.name === 'ASYA_IS_END_ACTOR' && e.value === 'true'))
  }
  t.equal(readSidecarConfig(envOf(sidecarOf('x', {}, 2))).shutdownTimeoutMs, 1000, 'never below 1 s')
})
