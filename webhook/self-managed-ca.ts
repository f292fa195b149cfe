/**
 * Self-managed CA mode: no cert-manager, no hand-made certs. The webhook keeps a CA in a Secret of
 * the system namespace (the first replica to start creates it; the others adopt it — a create race
 * is settled by the API server's 409), signs its own serving certificate with it into a local
 * directory the CertWatcher reads, and keeps the CA in the MutatingWebhookConfiguration's
 * `caBundle`, re-patching whenever something (a `kubectl apply`, a GitOps sync) resets it.
 *
 * Every replica signs its own serving cert with the shared CA, so the Service may route to any.
 */
import { X509Certificate } from 'node:crypto'
import { mkdir, writeFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { AdmissionregistrationV1Api, CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node'
import type { Counter, Registry } from 'prom-client'
import { Counter as PromCounter } from 'prom-client'
import { errorMessage, errors } from '../src/errors.js'
import type { Logger } from '../src/logger.js'
import { generateCerts } from './certs.js'
import { SingleFlight } from '../src/single-flight.js'

export interface SelfManagedCaOptions {
  kubeConfig: KubeConfig
  namespace: string
  service: string
  caSecretName: string
  webhookConfigurationName: string
  /** Where tls.crt / tls.key are written (the CertWatcher's files). */
  certFile: string
  keyFile: string
  /** Scratch directory for openssl. */
  workDir: string
  resyncMs: number
  logger: Logger
  registry: Registry
  /** Serving certificate validity; renewed when less than a third is left. @default 365 */
  servingDays?: number
}

function httpStatus(err: unknown): number | undefined {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined
  return typeof code === 'number' ? code : undefined
}

const b64 = (s: string): string => Buffer.from(s).toString('base64')
const unb64 = (s: string | undefined): string | undefined => (s === undefined ? undefined : Buffer.from(s, 'base64').toString('utf8'))

export class SelfManagedCa {
  private ca: { cert: string; key: string } | undefined
  private servingValidTo = 0
  private servingValidFrom = 0
  private timer: NodeJS.Timeout | undefined
  private readonly running = new SingleFlight(() => this.pass())
  private readonly core: CoreV1Api
  private readonly admission: AdmissionregistrationV1Api
  private readonly syncs: Counter<'step' | 'result'>

  constructor(private readonly o: SelfManagedCaOptions) {
    this.core = o.kubeConfig.makeApiClient(CoreV1Api)
    this.admission = o.kubeConfig.makeApiClient(AdmissionregistrationV1Api)
    const name = 'asya_webhook_ca_sync_total'
    this.syncs =
      (o.registry.getSingleMetric(name) as Counter<'step' | 'result'> | undefined) ??
      new PromCounter({ name, help: 'Self-managed CA steps (ca, serving_cert, ca_bundle) by result (ok, changed, error)', labelNames: ['step', 'result'] as const, registers: [o.registry] })
  }

  /** base64 PEM of the CA, once known. */
  get caBundle(): string | undefined {
    return this.ca ? b64(this.ca.cert) : undefined
  }

  /** One pass now; then every resyncMs. Failures are logged and retried, never thrown. */
  async start(): Promise<void> {
    await this.sync()
    this.timer = setInterval(() => void this.sync(), this.o.resyncMs)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
  }

  /** Ensures CA, serving cert and caBundle; concurrent calls share one pass. */
  sync(): Promise<void> {
    return this.running.run()
  }

  private async pass(): Promise<void> {
    const step = async (name: 'ca' | 'serving_cert' | 'ca_bundle', fn: () => Promise<boolean>): Promise<boolean> => {
      try {
        const changed = await fn()
        this.syncs.inc({ step: name, result: changed ? 'changed' : 'ok' })
        return true
      } catch (err) {
        this.syncs.inc({ step: name, result: 'error' })
        this.o.logger.error({ code: httpStatus(err) !== undefined ? 'ASYA_ERR_K8S_API' : 'ASYA_ERR_TLS', step: name, err: errorMessage(err) }, 'self-managed CA step failed; retrying')
        return false
      }
    }
    if (!(await step('ca', () => this.ensureCa()))) return
    if (!(await step('serving_cert', () => this.ensureServingCert()))) return
    await step('ca_bundle', () => this.ensureCaBundle())
  }

  private async ensureCa(): Promise<boolean> {
    const { namespace, caSecretName: name } = this.o
    try {
      const s = await this.core.readNamespacedSecret({ name, namespace })
      const cert = unb64(s.data?.['ca.crt'])
      const key = unb64(s.data?.['ca.key'])
      if (cert === undefined || key === undefined) throw new errors.ASYA_ERR_TLS(`Secret ${namespace}/${name} lacks ca.crt or ca.key`)
      const changed = this.ca?.cert !== cert
      this.ca = { cert, key }
      if (changed) this.servingValidTo = 0 // the CA changed under us: re-sign
      return changed
    } catch (err) {
      if (httpStatus(err) !== 404) throw err
    }
    const made = await generateCerts({ dir: join(this.o.workDir, 'ca'), service: this.o.service, namespace })
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: { name, namespace, labels: { 'app.kubernetes.io/managed-by': 'asya', 'app.kubernetes.io/component': 'webhook-ca' } },
      data: { 'ca.crt': b64(made.caCert), 'ca.key': b64(made.caKey) },
    }
    try {
      await this.core.createNamespacedSecret({ namespace, body })
      this.o.logger.info({ secret: `${namespace}/${name}` }, 'created the webhook CA')
      this.ca = { cert: made.caCert, key: made.caKey }
      this.servingValidTo = 0
      return true
    } catch (err) {
      if (httpStatus(err) !== 409) throw err
      // Another replica created it first: use theirs so every replica chains to one caBundle.
      return this.ensureCa()
    }
  }

  private async ensureServingCert(): Promise<boolean> {
    const now = Date.now()
    if (this.servingValidTo - now > (this.servingValidTo - this.servingValidFrom) / 3) return false
    if (!this.ca) throw new errors.ASYA_ERR_TLS('no CA loaded yet')
    const made = await generateCerts({ dir: join(this.o.workDir, 'serving'), service: this.o.service, namespace: this.o.namespace, days: this.o.servingDays ?? 365, ca: this.ca })
    // Key first, then cert, each via rename: the watcher never sees a torn file, and a
    // momentarily mismatched pair is rejected by validation until the second rename lands.
    for (const [target, content] of [
      [this.o.keyFile, made.key],
      [this.o.certFile, made.cert],
    ] as const) {
      await mkdir(join(target, '..'), { recursive: true })
      await writeFile(`${target}.tmp`, content, { mode: 0o600 })
      await rename(`${target}.tmp`, target)
    }
    const x = new X509Certificate(made.cert)
    this.servingValidFrom = new Date(x.validFrom).getTime()
    this.servingValidTo = new Date(x.validTo).getTime()
    this.o.logger.info({ validTo: x.validTo }, 'signed a serving certificate with the self-managed CA')
    return true
  }

  private async ensureCaBundle(): Promise<boolean> {
    const bundle = this.caBundle
    if (bundle === undefined) throw new errors.ASYA_ERR_TLS('no CA loaded yet')
    let cfg
    try {
      cfg = await this.admission.readMutatingWebhookConfiguration({ name: this.o.webhookConfigurationName })
    } catch (err) {
      if (httpStatus(err) === 404) {
        this.o.logger.warn({ name: this.o.webhookConfigurationName }, 'MutatingWebhookConfiguration not found yet; will patch caBundle when it appears')
        return false
      }
      throw err
    }
    let changed = false
    for (const w of cfg.webhooks ?? []) {
      const svc = w.clientConfig.service
      if (svc && (svc.name !== this.o.service || svc.namespace !== this.o.namespace)) continue
      if (w.clientConfig.caBundle !== bundle) {
        w.clientConfig.caBundle = bundle
        changed = true
      }
    }
    if (!changed) return false
    // PUT with the read resourceVersion: a concurrent edit makes this a 409, retried next pass.
    await this.admission.replaceMutatingWebhookConfiguration({ name: this.o.webhookConfigurationName, body: cfg })
    this.o.logger.info({ name: this.o.webhookConfigurationName }, 'patched caBundle into the MutatingWebhookConfiguration')
    return true
  }
}
