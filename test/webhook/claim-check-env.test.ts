/**
 * Claim check in a cluster (SPEC §10.4): the system's ASYA_CLAIM_CHECK_* settings reach every
 * injected sidecar under the sidecar's own names, credentials only by Secret reference, and the
 * sidecar accepts what it gets (the env resolved the way the kubelet would).
 */
import t from 'tap'
import { readSidecarConfig } from '../../sidecar/config.js'
import { readWebhookConfig } from '../../src/system/config.js'
import { injectPod } from '../../webhook/inject.js'

type EnvVar = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }
type Container = { name: string; env?: EnvVar[] }

const SYSTEM = {
  ASYA_TRANSPORT: 'rabbitmq',
  ASYA_RABBITMQ_HOST: 'rabbitmq.rabbitmq.svc',
  ASYA_SIDECAR_IMAGE: 'ghcr.io/asya-ts/asya-sidecar:0.1.0',
  ASYA_CLAIM_CHECK_BUCKET: 'asya-claims',
  ASYA_CLAIM_CHECK_ENDPOINT: 'http://minio.minio.svc:9000/',
  ASYA_CLAIM_CHECK_REGION: 'eu-central-1',
  ASYA_CLAIM_CHECK_THRESHOLD: '512KiB',
  ASYA_CLAIM_CHECK_PREFIX: 'claims/',
  ASYA_CLAIM_CHECK_CREDENTIALS_SECRET: 'asya-s3',
}

function pod(annotations: Record<string, string> = {}): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { labels: { 'asya.sh/actor': 'resize' }, annotations: { 'asya.sh/handler': 'img.resize', ...annotations } },
    spec: { containers: [{ name: 'asya-runtime', image: 'python:3.12-slim' }] },
  }
}

function sidecarOf(p: Record<string, unknown>): Container {
  const spec = p.spec as { initContainers?: Container[]; containers: Container[] }
  return [...(spec.initContainers ?? []), ...spec.containers].find((c) => c.name === 'asya-sidecar') as Container
}

/** The env as the kubelet assembles it, Secret keys looked up in `secrets`. */
function resolve(c: Container, secrets: Record<string, Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const e of c.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef
    const v = ref ? secrets[ref.name]?.[ref.key] : e.value
    if (v === undefined) throw new Error(`env ${e.name}: ${ref ? `Secret ${ref.name} has no key ${ref.key}` : 'no value'}`)
    out[e.name] = v
  }
  return out
}

t.test('system settings → every injected sidecar: bucket, prefix, threshold, endpoint, region; keys by secretKeyRef; the sidecar accepts them', async (t) => {
  const config = readWebhookConfig(SYSTEM)
  t.same(config.claimCheck, {
    bucket: 'asya-claims',
    prefix: 'claims/',
    thresholdBytes: 512 * 1024,
    endpoint: 'http://minio.minio.svc:9000',
    region: 'eu-central-1',
    credentialSecret: { name: 'asya-s3', accessKeyKey: 'ASYA_S3_ACCESS_KEY', secretKeyKey: 'ASYA_S3_SECRET_KEY' },
  })
  const r = injectPod(pod(), { config, namespace: 'team-a' })
  if (r.kind !== 'injected') throw new Error(`not injected: ${JSON.stringify(r)}`)
  t.same(r.warnings, [])
  const sc = sidecarOf(r.pod)
  const keys = (sc.env ?? []).filter((e) => e.name === 'ASYA_S3_ACCESS_KEY' || e.name === 'ASYA_S3_SECRET_KEY')
  t.same(keys.map((e) => e.valueFrom?.secretKeyRef), [{ name: 'asya-s3', key: 'ASYA_S3_ACCESS_KEY' }, { name: 'asya-s3', key: 'ASYA_S3_SECRET_KEY' }], 'credentials by reference only')
  t.notOk(keys.some((e) => e.value !== undefined), 'never inline')
  const cfg = readSidecarConfig(resolve(sc, { 'asya-s3': { ASYA_S3_ACCESS_KEY: 'AKIA-test', ASYA_S3_SECRET_KEY: 'shh' } }))
  t.same(cfg.claimCheck, { bucket: 'asya-claims', prefix: 'claims/', thresholdBytes: 512 * 1024 })
  t.equal(cfg.s3.endpoint, 'http://minio.minio.svc:9000')
  t.equal(cfg.s3.region, 'eu-central-1')
  t.equal(cfg.s3.forcePathStyle, true, 'path-style with an endpoint (MinIO)')
  t.same(cfg.s3.credentials, { accessKeyId: 'AKIA-test', secretAccessKey: 'shh' })
  t.equal(cfg.s3.bucket, undefined, 'an ordinary actor persists nothing: only the claim check is on')
  const runtime = (r.pod.spec as { containers: Container[] }).containers.find((c) => c.name === 'asya-runtime') as Container
  t.notOk((runtime.env ?? []).some((e) => /CLAIM|S3/.test(e.name)), 'the handler container sees none of it')
})

t.test('asya.sh/claim-check-threshold overrides the system threshold for that pod only; bucket and client stay the system’s', async (t) => {
  const config = readWebhookConfig(SYSTEM)
  const r = injectPod(pod({ 'asya.sh/claim-check-threshold': '64KiB' }), { config, namespace: 'team-a' })
  if (r.kind !== 'injected') throw new Error('not injected')
  const env = resolve(sidecarOf(r.pod), { 'asya-s3': { ASYA_S3_ACCESS_KEY: 'a', ASYA_S3_SECRET_KEY: 'b' } })
  t.equal(readSidecarConfig(env).claimCheck?.thresholdBytes, 64 * 1024)
  t.equal(env.ASYA_CLAIM_CHECK_BUCKET, 'asya-claims')
})

t.test('pod identity (no Secret): no keys injected, the SDK default chain applies; no threshold = the sidecar’s per-transport default', async (t) => {
  const config = readWebhookConfig({ ASYA_TRANSPORT: 'sqs', ASYA_AWS_REGION: 'eu-west-1', ASYA_SQS_IDENTITY: 'pod', ASYA_CLAIM_CHECK_BUCKET: 'asya-claims-prod' })
  const r = injectPod(pod(), { config, namespace: 'team-b' })
  if (r.kind !== 'injected') throw new Error('not injected')
  const env = resolve(sidecarOf(r.pod), {})
  t.notOk('ASYA_S3_ACCESS_KEY' in env || 'ASYA_S3_SECRET_KEY' in env || 'ASYA_S3_ENDPOINT' in env)
  const cfg = readSidecarConfig(env)
  t.same(cfg.claimCheck, { bucket: 'asya-claims-prod', prefix: 'asya-claims/', thresholdBytes: 200 * 1024 }, 'SQS default threshold (under the 256 KiB limit)')
  t.equal(cfg.s3.region, 'eu-west-1', 'region of the SQS settings')
  t.equal(cfg.s3.credentials, undefined)
})

t.test('claim check off: nothing injected; the annotation alone admits the pod with a warning; a bad annotation is denied naming it', async (t) => {
  const off = readWebhookConfig({ ASYA_TRANSPORT: 'rabbitmq' })
  t.equal(off.claimCheck, undefined)
  const r = injectPod(pod(), { config: off, namespace: 'team-a' })
  if (r.kind !== 'injected') throw new Error('not injected')
  t.notOk((sidecarOf(r.pod).env ?? []).some((e) => /CLAIM|S3/.test(e.name)), 'no claim-check env')
  const w = injectPod(pod({ 'asya.sh/claim-check-threshold': '1MiB' }), { config: off, namespace: 'team-a' })
  t.equal(w.kind, 'injected')
  t.match(w.kind === 'injected' ? w.warnings : [], [/asya\.sh\/claim-check-threshold has no effect.*ASYA_CLAIM_CHECK_BUCKET/])
  for (const bad of ['512', 'lots', '-1MiB', '']) {
    const d = injectPod(pod({ 'asya.sh/claim-check-threshold': bad }), { config: readWebhookConfig(SYSTEM), namespace: 'team-a' })
    t.equal(d.kind, 'denied', `"${bad}" denied`)
    t.match(d.kind === 'denied' ? d.message : '', /asya\.sh\/claim-check-threshold=.*at least 1024 bytes/)
  }
})

t.test('system configuration: every bad claim-check variable reported at once, client settings without a bucket refused', async (t) => {
  const message = (env: Record<string, string>): string => {
    try {
      readWebhookConfig(env)
    } catch (err) {
      return (err as Error).message
    }
    return 'accepted'
  }
  const all = message({
    ASYA_CLAIM_CHECK_BUCKET: 'Not_A_Bucket',
    ASYA_CLAIM_CHECK_THRESHOLD: '12',
    ASYA_CLAIM_CHECK_ENDPOINT: 'minio:9000',
    ASYA_CLAIM_CHECK_PREFIX: '/abs',
    ASYA_CLAIM_CHECK_CREDENTIALS_SECRET: 'Bad Secret',
    ASYA_CLAIM_CHECK_FORCE_PATH_STYLE: 'maybe',
  })
  for (const n of ['ASYA_CLAIM_CHECK_BUCKET', 'ASYA_CLAIM_CHECK_THRESHOLD', 'ASYA_CLAIM_CHECK_ENDPOINT', 'ASYA_CLAIM_CHECK_PREFIX', 'ASYA_CLAIM_CHECK_CREDENTIALS_SECRET', 'ASYA_CLAIM_CHECK_FORCE_PATH_STYLE']) {
    t.match(all, n, `${n} reported`)
  }
  t.match(message({ ASYA_CLAIM_CHECK_ENDPOINT: 'http://minio:9000' }), /ASYA_CLAIM_CHECK_ENDPOINT: is set but ASYA_CLAIM_CHECK_BUCKET is not/)
  t.equal(message({ ASYA_CLAIM_CHECK_BUCKET: 'ok-bucket' }), 'accepted')
})

t.test('tracing: the system OTEL_* variables reach every injected sidecar, validated at the system start', async (t) => {
  const base = { ASYA_TRANSPORT: 'rabbitmq', ASYA_RABBITMQ_HOST: 'rabbitmq.rabbitmq.svc' }
  const config = readWebhookConfig({ ...base, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel-collector.observability:4318', OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1', OTEL_EXPORTER_OTLP_HEADERS: 'authorization=secret' })
  const r = injectPod(pod(), { config, namespace: 'team-a' })
  if (r.kind !== 'injected') throw new Error('not injected')
  const sc = sidecarOf(r.pod)
  const env = resolve(sc, {})
  t.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://otel-collector.observability:4318')
  t.equal(env.OTEL_TRACES_SAMPLER, 'parentbased_traceidratio')
  t.equal(env.OTEL_TRACES_SAMPLER_ARG, '0.1')
  t.notOk('OTEL_EXPORTER_OTLP_HEADERS' in env, 'headers may hold credentials: never copied into a pod spec')
  t.same(readSidecarConfig({ ...env, ASYA_ACTOR_NAME: 'resize' }).tracing, { enabled: true, serviceName: 'asya-sidecar', tracesUrl: 'http://otel-collector.observability:4318/v1/traces' }, 'the sidecar turns tracing on')
  const runtime = (r.pod.spec as { containers: Container[] }).containers.find((c) => c.name === 'asya-runtime') as Container
  t.notOk((runtime.env ?? []).some((e) => e.name.startsWith('OTEL_')), 'the handler container is left alone')
  const off = injectPod(pod(), { config: readWebhookConfig(base), namespace: 'team-a' })
  if (off.kind !== 'injected') throw new Error('not injected')
  t.notOk((sidecarOf(off.pod).env ?? []).some((e) => e.name.startsWith('OTEL_')), 'nothing when the system has none')
  t.throws(() => readWebhookConfig({ ...base, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }), /OTEL_EXPORTER_OTLP_PROTOCOL.*grpc/, 'a bad value fails the system start, naming the variable')
})
