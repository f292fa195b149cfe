import { SQSClient } from '@aws-sdk/client-sqs'
import type { KubeConfig } from '@kubernetes/client-node'
import type { Registry } from 'prom-client'
import { queueName } from '../envelope.js'
import type { Logger } from '../logger.js'
import type { ControllerSettings } from './config.js'
import { Controller } from './controller.js'
import type { ScalerConfig, SqsScalerConfig } from './keda.js'
import type { QueueProvisioner, QueueTransport } from './queues.js'
import { declareActorTopology } from '../transport/rabbitmq-topology.js'
import { amqpUrl } from '../transport/rabbitmq-transport.js'
import { RabbitQueues } from './rabbitmq-queues.js'
import { SqsQueues } from './sqs-queues.js'

/** Transport settings the controller needs (a projection of the system process config). */
export interface ControllerTransports {
  defaultTransport: QueueTransport
  watchNamespaces: readonly string[]
  rabbitmq?: {
    host: string
    port: number
    vhost: string
    exchange: string
    username: string
    password: string
    tls?: boolean
    /** Management API URL KEDA polls (protocol http), without credentials. */
    managementUrl: string
    /** Secret in each actor namespace with the broker user, for the TriggerAuthentication. */
    credentialSecret?: { name: string; usernameKey: string; passwordKey: string }
  }
  sqs?: {
    region: string
    endpoint?: string
    accountId: string
    auth: SqsScalerConfig['auth']
  }
}

function sqsQueueUrl(s: NonNullable<ControllerTransports['sqs']>, actor: string): string {
  const base = s.endpoint ? s.endpoint.replace(/\/+$/, '') : `https://sqs.${s.region}.amazonaws.com`
  return `${base}/${s.accountId}/${queueName(actor)}`
}

/** Builds the controller and its queue provisioners from configuration. */
export function createController(o: {
  kubeConfig: KubeConfig
  transports: ControllerTransports
  settings: ControllerSettings
  runtimeScript: string
  registry: Registry
  logger: Logger
  onLeadershipChange?: (leading: boolean) => void
}): { controller: Controller; close: () => Promise<void> } {
  const { transports: tr, settings } = o
  const queues: Partial<Record<QueueTransport, QueueProvisioner>> = {}
  let sqsClient: SQSClient | undefined
  if (tr.rabbitmq) {
    const r = tr.rabbitmq
    queues.rabbitmq = new RabbitQueues({ url: amqpUrl(r), exchange: r.exchange, declare: declareActorTopology, logger: o.logger })
  }
  if (tr.sqs) {
    sqsClient = new SQSClient({ region: tr.sqs.region, ...(tr.sqs.endpoint ? { endpoint: tr.sqs.endpoint } : {}) })
    queues.sqs = new SqsQueues({ client: sqsClient, maxReceiveCount: settings.sqsMaxReceiveCount, logger: o.logger })
  }
  const scaler = (transport: QueueTransport, actor: string): ScalerConfig => {
    if (transport === 'rabbitmq' && tr.rabbitmq) {
      const r = tr.rabbitmq
      return { transport, rabbitmq: { managementUrl: r.managementUrl, vhost: r.vhost, ...(r.credentialSecret ? { credentialSecret: r.credentialSecret } : {}) } }
    }
    if (transport === 'sqs' && tr.sqs) {
      const s = tr.sqs
      return { transport, sqs: { region: s.region, ...(s.endpoint ? { endpoint: s.endpoint } : {}), queueUrl: sqsQueueUrl(s, actor), auth: s.auth } }
    }
    // The reconciler reports an unconfigured transport before asking for a scaler.
    throw new Error(`transport ${transport} is not configured`)
  }
  const controller = new Controller({
    kubeConfig: o.kubeConfig,
    namespaces: tr.watchNamespaces,
    resyncMs: settings.resyncMs,
    concurrency: settings.concurrency,
    defaultTransport: tr.defaultTransport,
    queues,
    scaler,
    runtimeScript: o.runtimeScript,
    registry: o.registry,
    logger: o.logger,
    onLeadershipChange: o.onLeadershipChange,
    ...(settings.leaderElection
      ? {
          leaderElection: {
            namespace: settings.leaseNamespace,
            name: settings.leaseName,
            identity: settings.identity,
            leaseDurationMs: settings.leaseDurationMs,
            renewDeadlineMs: settings.renewDeadlineMs,
            retryPeriodMs: settings.retryPeriodMs,
          },
        }
      : {}),
  })
  return {
    controller,
    close: async () => {
      await controller.stop()
      for (const q of Object.values(queues)) await q?.close()
      sqsClient?.destroy()
    },
  }
}
