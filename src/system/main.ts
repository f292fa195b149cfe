/**
 * The Asya system process: the admission webhook (every replica) and the controller (the
 * leader only) in one process with one Prometheus registry. SIGTERM/SIGINT → graceful stop.
 *
 *   node dist/src/system/main.js in the image; from a checkout `npm run system` (src/system/local.ts)
 */
import { mkdtempSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { KubeConfig } from '@kubernetes/client-node'
import { Registry, collectDefaultMetrics } from 'prom-client'
import { errorMessage, isAsyaError } from '../errors.js'
import { createLogger, type Logger } from '../logger.js'
import { loadRuntimeScript } from '../controller/config.js'
import { createController } from '../controller/setup.js'
import { createWebhookServer, type WebhookServer } from '../../webhook/server.js'
import { SelfManagedCa } from '../../webhook/self-managed-ca.js'
import { kubeWarningRecorder } from '../../webhook/events.js'
import { readSystemConfig, type SystemConfig } from './config.js'

export interface SystemProcess {
  registry: Registry
  /** Address of the metrics/health listener. */
  metricsUrl: string
  /** The admission webhook (every replica), unless ASYA_WEBHOOK_ENABLED=false. */
  webhook?: WebhookServer
  /** https:// base URL of the webhook listener. */
  webhookUrl?: string
  isLeader(): boolean
  stop(): Promise<void>
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv
  /** Already read from `env` (the entry point reads it first to pick the log level). @default readSystemConfig(env) */
  config?: SystemConfig
  kubeConfig?: KubeConfig
  logger?: Logger
}

export async function startSystem(o: StartOptions = {}): Promise<SystemProcess> {
  const env = o.env ?? process.env
  // Read before anything starts: a bad value must fail the start, not half-start the process, and
  // every bad variable is named at once.
  const config = o.config ?? readSystemConfig(env)
  const { controller: settings, transports, webhook: webhookConfig, systemNamespace } = config
  const logger = o.logger ?? createLogger('asya-system', { level: config.logLevel })
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  // One KubeConfig for the controller, the self-managed CA and the webhook's Events, loaded once
  // and only when something needs it (webhook-only runs may have none).
  let kubeConfig: KubeConfig | undefined = o.kubeConfig
  const kube = (): KubeConfig => {
    if (!kubeConfig) {
      const kc = new KubeConfig()
      kc.loadFromDefault()
      kubeConfig = kc
    }
    return kubeConfig
  }

  let leading = false
  let controllerHandle: ReturnType<typeof createController> | undefined
  if (settings.enabled) {
    controllerHandle = createController({
      kubeConfig: kube(),
      transports,
      settings,
      runtimeScript: loadRuntimeScript(config.runtimeScriptPath),
      registry,
      logger: logger.child({ component: 'controller' }),
      onLeadershipChange: (l) => {
        leading = l
      },
    })
    controllerHandle.controller.start()
  }

  // The webhook runs on every replica (admission must not depend on who leads). It serves
  // /healthz, /readyz and /metrics over HTTPS too; the plain listener below stays so Prometheus
  // and probes work while no certificate is loaded yet.
  let webhook: WebhookServer | undefined
  let webhookUrl: string | undefined
  let selfCa: SelfManagedCa | undefined
  if (webhookConfig.enabled) {
    try {
      if (webhookConfig.certMode === 'self-managed') {
        selfCa = new SelfManagedCa({
          kubeConfig: kube(),
          namespace: systemNamespace,
          service: webhookConfig.service,
          caSecretName: webhookConfig.caSecretName,
          webhookConfigurationName: webhookConfig.webhookConfigurationName,
          certFile: webhookConfig.tlsCertFile,
          keyFile: webhookConfig.tlsKeyFile,
          workDir: mkdtempSync(join(tmpdir(), 'asya-ca-')),
          resyncMs: webhookConfig.caResyncMs,
          logger: logger.child({ component: 'webhook-ca' }),
          registry,
        })
        // A failing first pass is logged and retried: the webhook is simply not ready meanwhile.
        await selfCa.start()
      }
      const webhookLogger = logger.child({ component: 'webhook' })
      // Events need the API; without a kubeconfig (webhook-only runs) warnings are logged only.
      let kc: KubeConfig | undefined
      try {
        kc = kube()
      } catch {
        kc = undefined
      }
      webhook = await createWebhookServer(webhookConfig, {
        logger: webhookLogger,
        registry,
        ...(kc?.getCurrentCluster() ? { recordWarning: kubeWarningRecorder(kc, webhookLogger) } : {}),
      })
      webhookUrl = await webhook.listen()
    } catch (err) {
      selfCa?.stop()
      await webhook?.close()
      await controllerHandle?.close()
      throw err
    }
  }
  const { host, port } = config.metrics
  const server: Server = createServer((req, res) => {
    if (req.url === '/metrics') {
      registry
        .metrics()
        .then((body) => {
          res.writeHead(200, { 'content-type': registry.contentType })
          res.end(body)
        })
        .catch((err: unknown) => {
          res.writeHead(500)
          res.end(errorMessage(err))
        })
      return
    }
    if (req.url === '/healthz' || req.url === '/readyz') {
      // Not ready while the webhook has no certificate: the webhook Service must not route here.
      const ready = req.url === '/healthz' || webhook === undefined || webhook.isReady()
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ ok: ready, leader: leading, webhookReady: webhook?.isReady() ?? null }))
      return
    }
    res.writeHead(404)
    res.end()
  })
  await new Promise<void>((resolve) => server.listen(port, host, resolve))
  const a = server.address() as AddressInfo
  logger.info({ metrics: `${a.address}:${a.port}`, controller: settings.enabled, webhook: webhookUrl ?? false }, 'asya system process started')

  let stopping: Promise<void> | undefined
  return {
    registry,
    metricsUrl: `http://${a.address === '0.0.0.0' || a.address === '::' ? '127.0.0.1' : a.address}:${a.port}`,
    ...(webhook ? { webhook } : {}),
    ...(webhookUrl !== undefined ? { webhookUrl } : {}),
    isLeader: () => leading,
    stop: () => {
      stopping ??= (async () => {
        selfCa?.stop()
        await webhook?.close()
        await controllerHandle?.close()
        server.closeAllConnections()
        await new Promise<void>((r) => server.close(() => r()))
        logger.info('asya system process stopped')
      })()
      return stopping
    },
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href
if (isMain) {
  let config: SystemConfig
  try {
    config = readSystemConfig(process.env)
  } catch (err) {
    createLogger('asya-system').fatal({ code: isAsyaError(err) ? err.code : undefined, err: errorMessage(err) }, 'asya system process failed to start')
    process.exit(1)
  }
  const logger = createLogger('asya-system', { level: config.logLevel })
  startSystem({ logger, config })
    .then((sys) => {
      const shutdown = (signal: string): void => {
        logger.info({ signal }, 'shutting down')
        sys.stop().then(
          () => process.exit(0),
          (err: unknown) => {
            logger.error({ err: errorMessage(err) }, 'shutdown failed')
            process.exit(1)
          },
        )
      }
      process.once('SIGTERM', () => shutdown('SIGTERM'))
      process.once('SIGINT', () => shutdown('SIGINT'))
    })
    .catch((err: unknown) => {
      logger.fatal({ code: isAsyaError(err) ? err.code : undefined, err: errorMessage(err) }, 'asya system process failed to start')
      process.exit(1)
    })
}
