/**
 * The mutating admission webhook (SPEC §6): Fastify over HTTPS, `POST /mutate` takes an
 * `admission.k8s.io/v1` AdmissionReview and answers one with the same uid. Bad input is a 4xx
 * with a message, never a 5xx and never a crash; our own failures admit the pod unchanged with
 * a warning (the cluster must keep scheduling pods when the webhook has a bug).
 */
import type { Server as HttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyError } from 'fastify'
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { errorMessage, errors } from '../src/errors.js'
import type { Logger } from '../src/logger.js'
import type { WebhookConfig } from '../src/system/config.js'
import { injectPod, type InjectResult, type SkipReason } from './inject.js'
import type { WarningRecorder } from './events.js'
import { CertWatcher, secureContextOptions, TLS_MIN_VERSION, type LoadedCert } from './tls.js'

export type Outcome = 'injected' | 'skipped' | 'denied' | 'error' | 'bad_request'

export interface AdmissionResponse {
  uid: string
  allowed: boolean
  patchType?: 'JSONPatch'
  patch?: string
  warnings?: string[]
  status?: { code: number; reason: string; message: string }
}

export interface AdmissionReviewOut {
  apiVersion: 'admission.k8s.io/v1'
  kind: 'AdmissionReview'
  response: AdmissionResponse
}

export interface WebhookServer {
  app: FastifyInstance
  /** Starts listening on config.host:config.port; resolves to the https:// base URL. */
  listen(): Promise<string>
  address(): AddressInfo | null
  /** Ready = a valid certificate is loaded. */
  isReady(): boolean
  cert(): LoadedCert | undefined
  /** Re-reads the cert/key files now instead of waiting for the watch/poll. */
  reloadTls(): Promise<void>
  close(): Promise<void>
}

interface Metrics {
  requests: Counter<'outcome' | 'reason'>
  duration: Histogram<'outcome'>
  tlsReloads: Counter<'result'>
  certExpiry: Gauge
}

function metric<T>(registry: Registry, name: string, make: () => T): T {
  // The system process and tests may build more than one server on a registry: reuse.
  return (registry.getSingleMetric(name) as T | undefined) ?? make()
}

function makeMetrics(registry: Registry): Metrics {
  return {
    requests: metric(registry, 'asya_webhook_admission_requests_total', () => new Counter({ name: 'asya_webhook_admission_requests_total', help: 'AdmissionReview requests by outcome (injected, skipped, denied, error, bad_request) and reason', labelNames: ['outcome', 'reason'] as const, registers: [registry] })),
    duration: metric(registry, 'asya_webhook_admission_duration_seconds', () => new Histogram({ name: 'asya_webhook_admission_duration_seconds', help: 'Time to answer an AdmissionReview', labelNames: ['outcome'] as const, buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5], registers: [registry] })),
    tlsReloads: metric(registry, 'asya_webhook_tls_reloads_total', () => new Counter({ name: 'asya_webhook_tls_reloads_total', help: 'Serving certificate (re)loads by result (loaded, invalid)', labelNames: ['result'] as const, registers: [registry] })),
    certExpiry: metric(registry, 'asya_webhook_tls_cert_expiry_timestamp_seconds', () => new Gauge({ name: 'asya_webhook_tls_cert_expiry_timestamp_seconds', help: 'notAfter of the serving certificate in use', registers: [registry] })),
  }
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

const BadRequest = errors.ASYA_ERR_ADMISSION_BAD_REQUEST

interface ParsedRequest {
  uid: string
  kind: unknown
  operation: unknown
  namespace?: string
  object: unknown
  dryRun: boolean
  name?: string
}

/** Validates the envelope of the review; what is inside `object` is injectPod's business. */
function parseReview(body: unknown): ParsedRequest {
  if (!isObj(body)) throw new BadRequest('body must be a JSON object (an admission.k8s.io/v1 AdmissionReview)')
  if (body.apiVersion !== 'admission.k8s.io/v1') throw new BadRequest(`apiVersion must be admission.k8s.io/v1, got ${JSON.stringify(body.apiVersion) ?? 'nothing'}`)
  if (body.kind !== 'AdmissionReview') throw new BadRequest(`kind must be AdmissionReview, got ${JSON.stringify(body.kind) ?? 'nothing'}`)
  const req = body.request
  if (!isObj(req)) throw new BadRequest('request must be an object')
  if (typeof req.uid !== 'string' || req.uid === '') throw new BadRequest('request.uid must be a non-empty string')
  return {
    uid: req.uid,
    kind: req.kind,
    operation: req.operation,
    ...(typeof req.namespace === 'string' && req.namespace !== '' ? { namespace: req.namespace } : {}),
    ...(typeof req.name === 'string' ? { name: req.name } : {}),
    object: req.object,
    dryRun: req.dryRun === true,
  }
}

function review(response: AdmissionResponse): AdmissionReviewOut {
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response }
}

export interface WebhookServerDeps {
  logger: Logger
  registry: Registry
  /** Records a Warning Event for pods admitted without injection or with timeout recovery off; never called for dryRun requests. */
  recordWarning?: WarningRecorder
}

export async function createWebhookServer(config: WebhookConfig, deps: WebhookServerDeps): Promise<WebhookServer> {
  const log = deps.logger
  const m = makeMetrics(deps.registry)
  const app = Fastify({
    // The listener starts without a certificate when none is readable yet; the watcher installs
    // one with setSecureContext as soon as it appears (/readyz stays 503 until then).
    https: { minVersion: TLS_MIN_VERSION },
    bodyLimit: config.bodyLimit,
    logger: false,
    return503OnClosing: true,
  })
  // AdmissionReviews are JSON; anything else is a 415, not a body we try to make sense of.
  app.removeContentTypeParser('text/plain')
  let loaded: LoadedCert | undefined
  const watcher = new CertWatcher({
    certFile: config.tlsCertFile,
    keyFile: config.tlsKeyFile,
    pollMs: config.tlsReloadIntervalMs,
    logger: log,
    onCert: (c) => {
      loaded = c
      ;(app.server as HttpsServer).setSecureContext(secureContextOptions(c))
      m.certExpiry.set(c.validTo.getTime() / 1000)
    },
    onCheck: (result) => m.tlsReloads.inc({ result }),
  })

  app.setErrorHandler((err: FastifyError, _req, reply) => {
    // Content-type parser and body-limit errors carry a 4xx: bad input, answered as such.
    const code = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 400
    m.requests.inc({ outcome: 'bad_request', reason: err.code ?? 'invalid' })
    log.warn({ code: 'ASYA_ERR_ADMISSION_BAD_REQUEST', status: code, err: err.message }, 'bad admission request')
    void reply.code(code).send({ code: 'ASYA_ERR_ADMISSION_BAD_REQUEST', message: err.message })
  })

  const decide = (r: ParsedRequest): { response: AdmissionResponse; outcome: Outcome; reason: string; result?: InjectResult } => {
    const skip = (reason: SkipReason): { response: AdmissionResponse; outcome: Outcome; reason: string } => ({ response: { uid: r.uid, allowed: true }, outcome: 'skipped', reason })
    const kind = isObj(r.kind) ? r.kind : {}
    if (kind.kind !== 'Pod' || (kind.group !== undefined && kind.group !== '')) return skip('not_pod')
    if (r.operation !== 'CREATE') return skip('not_create')
    const result = injectPod(r.object, { config, ...(r.namespace !== undefined ? { namespace: r.namespace } : {}) })
    if (result.kind === 'skipped') {
      return { response: { uid: r.uid, allowed: true, ...(result.warnings.length > 0 ? { warnings: result.warnings } : {}) }, outcome: 'skipped', reason: result.reason, result }
    }
    if (result.kind === 'denied') {
      return { response: { uid: r.uid, allowed: false, status: { code: 400, reason: 'BadRequest', message: result.message } }, outcome: 'denied', reason: 'invalid_annotation', result }
    }
    return {
      response: {
        uid: r.uid,
        allowed: true,
        patchType: 'JSONPatch',
        patch: Buffer.from(JSON.stringify(result.patch)).toString('base64'),
        ...(result.warnings.length > 0 ? { warnings: result.warnings } : {}),
      },
      outcome: 'injected',
      reason: result.recoveryOff !== undefined ? 'recovery_off' : 'injected',
      result,
    }
  }

  app.post('/mutate', async (req, reply) => {
    const started = process.hrtime.bigint()
    let parsed: ParsedRequest
    try {
      parsed = parseReview(req.body)
    } catch (err) {
      const message = errorMessage(err)
      m.requests.inc({ outcome: 'bad_request', reason: 'malformed_review' })
      log.warn({ code: 'ASYA_ERR_ADMISSION_BAD_REQUEST', err: message }, 'malformed AdmissionReview')
      return reply.code(400).send({ code: 'ASYA_ERR_ADMISSION_BAD_REQUEST', message })
    }
    let outcome: Outcome
    let reason: string
    let response: AdmissionResponse
    let result: InjectResult | undefined
    try {
      ;({ outcome, reason, response, result } = decide(parsed))
    } catch (err) {
      // Our bug, not the user's: never block pod creation for it.
      outcome = 'error'
      reason = 'internal'
      response = { uid: parsed.uid, allowed: true, warnings: ['asya: webhook failed; pod admitted without injection'] }
      log.error({ err: errorMessage(err), stack: err instanceof Error ? err.stack : undefined, uid: parsed.uid }, 'injection failed')
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    m.requests.inc({ outcome, reason })
    m.duration.observe({ outcome }, seconds)
    const fields = { uid: parsed.uid, namespace: parsed.namespace, outcome, reason, dryRun: parsed.dryRun, ...(result?.kind === 'injected' ? { actor: result.actor } : {}) }
    if (outcome === 'denied') log.info({ ...fields, code: 'ASYA_ERR_ADMISSION_INVALID_ANNOTATION', message: response.status?.message }, 'pod denied')
    else if (reason === 'no_runtime_container') {
      log.warn({ ...fields, code: 'ASYA_ERR_ADMISSION_NO_RUNTIME_CONTAINER', warnings: response.warnings }, 'pod admitted without injection')
      // dryRun means no side effects (sideEffects: None): no Event either.
      try {
        if (!parsed.dryRun) deps.recordWarning?.(parsed.object, parsed.namespace, 'AsyaNotInjected', response.warnings?.join('; ') ?? '')
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'cannot record the admission warning Event')
      }
    }
    else if (result?.kind === 'injected' && result.recoveryOff !== undefined) {
      log.warn({ ...fields, code: 'ASYA_ERR_ADMISSION_RECOVERY_OFF', warning: result.recoveryOff }, 'pod injected; timeout recovery is off')
      try {
        if (!parsed.dryRun) deps.recordWarning?.(parsed.object, parsed.namespace, 'AsyaRecoveryOff', result.recoveryOff)
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'cannot record the admission warning Event')
      }
    }
    else if (outcome === 'injected') log.info(fields, 'pod injected')
    else log.debug(fields, 'pod skipped')
    return reply.code(200).send(review(response))
  })

  app.get('/healthz', async () => ({ ok: true }))
  app.get('/readyz', async (_req, reply) => (loaded ? { ready: true } : reply.code(503).send({ ready: false, reason: 'no valid TLS certificate loaded' })))
  app.get('/metrics', async (_req, reply) => reply.type(deps.registry.contentType).send(await deps.registry.metrics()))

  await watcher.start()
  await app.ready()

  let closing: Promise<void> | undefined
  return {
    app,
    async listen() {
      await app.listen({ host: config.host, port: config.port })
      const a = app.server.address() as AddressInfo
      const host = a.address === '0.0.0.0' || a.address === '::' ? '127.0.0.1' : a.address.includes(':') ? `[${a.address}]` : a.address
      log.info({ addr: `${a.address}:${a.port}`, ready: loaded !== undefined }, 'admission webhook listening')
      return `https://${host}:${a.port}`
    },
    address: () => app.server.address() as AddressInfo | null,
    isReady: () => loaded !== undefined,
    cert: () => loaded,
    reloadTls: () => watcher.check(),
    close: () => {
      closing ??= (async () => {
        watcher.close()
        await app.close()
      })()
      return closing
    },
  }
}
