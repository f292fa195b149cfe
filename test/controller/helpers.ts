import { randomUUID } from 'node:crypto'
import amqp, { type Channel } from 'amqplib'
import type { V1Deployment } from '@kubernetes/client-node'
import { Registry } from 'prom-client'
import { Controller, type ControllerOptions } from '../../src/controller/controller.js'
import { makeKubeApis, type KubeApis } from '../../src/controller/kube.js'
import { RabbitQueues } from '../../src/controller/rabbitmq-queues.js'
import { createLogger } from '../../src/logger.js'
import { declareActorTopology as rabbitDeclare } from '../../src/transport/rabbitmq-topology.js'
import { startKubeApiServer as startTestApiServer } from '../k8s/kube-api-server.js'

/** The shared Kubernetes API test server (test/k8s), namespaces created on first use. */
async function startKubeApiServer() {
  const api = await startTestApiServer({ autoCreateNamespaces: true })
  return { ...api, stop: () => api.close() }
}

export const AMQP_URL = process.env.ASYA_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672'

export type KubeServer = Awaited<ReturnType<typeof startKubeApiServer>>

export function rid(prefix = 't'): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v !== undefined && v !== false) return v as T
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

export const silentLogger = createLogger('controller-test', { level: process.env.ASYA_TEST_LOG ?? 'silent' })

export interface Env {
  kube: KubeServer
  apis: KubeApis
  exchange: string
  /** A plain amqplib channel for checks (checkQueue, deleteQueue). */
  check(queue: string): Promise<number | undefined>
  deleteQueue(queue: string): Promise<void>
  makeController(extra?: Partial<ControllerOptions>): Controller
  /** Stops every controller made so far (afterEach: a failed test must not leave one running into the next). */
  stopControllers(): Promise<void>
  created: Set<string>
  close(): Promise<void>
}

export async function startEnv(): Promise<Env> {
  const kube = await startKubeApiServer()
  const apis = makeKubeApis(kube.kubeConfig)
  const exchange = rid('asya-ctl-test')
  const conn = await amqp.connect(AMQP_URL)
  const controllers: Controller[] = []
  const provisioners: RabbitQueues[] = []
  const created = new Set<string>()
  const withCh = async <T>(fn: (ch: Channel) => Promise<T>): Promise<T> => {
    const ch = await conn.createChannel()
    ch.on('error', () => undefined)
    try {
      return await fn(ch)
    } finally {
      await ch.close().catch(() => undefined)
    }
  }
  return {
    kube,
    apis,
    exchange,
    created,
    check: async (queue) => {
      try {
        return await withCh(async (ch) => (await ch.checkQueue(queue)).messageCount)
      } catch {
        return undefined
      }
    },
    deleteQueue: async (queue) => {
      await withCh(async (ch) => {
        await ch.deleteQueue(queue)
      })
    },
    makeController: (extra = {}) => {
      const queues = new RabbitQueues({ url: AMQP_URL, exchange, declare: rabbitDeclare, logger: silentLogger })
      provisioners.push(queues)
      const c = new Controller({
        kubeConfig: kube.kubeConfig,
        namespaces: [],
        resyncMs: 60_000,
        defaultTransport: 'rabbitmq',
        queues: { rabbitmq: queues },
        scaler: () => ({
          transport: 'rabbitmq',
          rabbitmq: { managementUrl: 'http://rabbitmq.asya-system:15672', vhost: '/', credentialSecret: { name: 'asya-rabbitmq', usernameKey: 'username', passwordKey: 'password' } },
        }),
        runtimeScript: '# asya runtime (test)\n',
        registry: new Registry(),
        logger: silentLogger,
        backoff: { initialMs: 50, maxMs: 500 },
        // The shared broker: end-actor queues only where a test names its own.
        endActors: [],
        ...extra,
      })
      controllers.push(c)
      return c
    },
    stopControllers: async () => {
      for (const c of controllers.splice(0)) await c.stop().catch(() => undefined)
    },
    close: async () => {
      for (const c of controllers) await c.stop().catch(() => undefined)
      for (const p of provisioners) await p.close()
      await withCh(async (ch) => {
        for (const q of created) await ch.deleteQueue(q).catch(() => undefined)
        await ch.deleteExchange(exchange).catch(() => undefined)
      }).catch(() => undefined)
      await conn.close().catch(() => undefined)
      await kube.stop()
    },
  }
}

export function deployment(namespace: string, name: string, actor: string | undefined, annotations: Record<string, string> = {}, templateAnnotations: Record<string, string> = {}): V1Deployment {
  const labels: Record<string, string> = { app: name }
  if (actor !== undefined) labels['asya.sh/actor'] = actor
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace, annotations },
    spec: {
      replicas: 0,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels, annotations: templateAnnotations },
        spec: { containers: [{ name: 'asya-runtime', image: 'python:3.12-slim' }] },
      },
    },
  }
}

export async function getCustom(apis: KubeApis, namespace: string, plural: string, name: string): Promise<Record<string, any> | undefined> {
  try {
    return (await apis.custom.getNamespacedCustomObject({ group: 'keda.sh', version: 'v1alpha1', namespace, plural, name })) as Record<string, any>
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined
    throw err
  }
}

export async function annotations(apis: KubeApis, namespace: string, name: string): Promise<Record<string, string>> {
  const d = await apis.apps.readNamespacedDeployment({ name, namespace })
  return d.metadata?.annotations ?? {}
}
