import { SQSClient } from '@aws-sdk/client-sqs'
import { errors } from '../errors.js'
import type { KubeConfig } from '@kubernetes/client-node'
import type { Registry } from 'prom-client'
import { queueName, type ClusterTransportName } from '../names.js'
import type { Logger } from '../logger.js'
import type { ControllerSettings, ControllerTransports } from './config.js'
import { Controller } from './controller.js'
import type { NatsScalerConfig, ScalerConfig } from './keda.js'
import type { QueueProvisioner } from './queues.js'
import { DEFAULT_QUEUE_TOPOLOGY, declareActorTopology } from '../transport/rabbitmq-topology.js'
import { amqpUrl } from '../transport/rabbitmq-transport.js'
import { RabbitQueues } from './rabbitmq-queues.js'
import { SqsQueues } from './sqs-queues.js'

export type { ControllerTransports } from './config.js'
import { NatsQueues } from './nats-queues.js'

function sqsQueueUrl(s: NonNullable<ControllerTransports['sqs']>, actor: string, known: string | undefined): string {
  if (s.accountId === undefined) {
    // The reconciler ensures the queue (which records its URL) before it builds the ScaledObject.
    if (known !== undefined) return known
    throw new errors.ASYA_ERR_CONFIG_MISSING(`the URL of ${queueName(actor)}`, 'ASYA_AWS_ACCOUNT_ID is unset and the queue is not ensured yet; retried after it is')
  }
  const base = s.endpoint ? s.endpoint.replace(/\/+$/, '') : `https://sqs.${s.region}.amazonaws.com`
  return `${base}/${s.accountId}/${queueName(actor)}`
}

/** KEDA's view of the NATS settings: with a monitoring Secret, endpoint (and account) go to a TriggerAuthentication. */
export function natsScalerConfig(n: NonNullable<ControllerTransports['nats']>): NatsScalerConfig {
  return { monitoringEndpoint: n.monitoringEndpoint, account: n.account, useHttps: n.monitoringHttps, ...(n.monitoringSecret ? { credentialSecret: n.monitoringSecret } : {}) }
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
  const queues: Partial<Record<ClusterTransportName, QueueProvisioner>> = {}
  let sqsClient: SQSClient | undefined
  let sqsQueues: SqsQueues | undefined
  if (tr.rabbitmq) {
    const r = tr.rabbitmq
    const topology = r.topology ?? DEFAULT_QUEUE_TOPOLOGY
    queues.rabbitmq = new RabbitQueues({
      url: amqpUrl(r),
      exchange: r.exchange,
      declare: (open, actor, exchange) => declareActorTopology(open, actor, exchange, topology),
      queueType: topology.queueType,
      logger: o.logger,
    })
  }
  if (tr.sqs) {
    sqsClient = new SQSClient({ region: tr.sqs.region, ...(tr.sqs.endpoint ? { endpoint: tr.sqs.endpoint } : {}) })
    sqsQueues = new SqsQueues({ client: sqsClient, maxReceiveCount: settings.sqsMaxReceiveCount, logger: o.logger })
    queues.sqs = sqsQueues
  }
  if (tr.nats) {
    queues.nats = new NatsQueues({ connection: tr.nats.connection, replicas: tr.nats.connection.replicas, logger: o.logger })
  }
  const scaler = (transport: ClusterTransportName, actor: string): ScalerConfig => {
    if (transport === 'nats' && tr.nats) {
      return { transport, nats: natsScalerConfig(tr.nats) }
    }
    if (transport === 'rabbitmq' && tr.rabbitmq) {
      const r = tr.rabbitmq
      return { transport, rabbitmq: { managementUrl: r.managementUrl, vhost: r.vhost, ...(r.credentialSecret ? { credentialSecret: r.credentialSecret } : {}) } }
    }
    if (transport === 'sqs' && tr.sqs) {
      const s = tr.sqs
      return { transport, sqs: { region: s.region, ...(s.endpoint ? { endpoint: s.endpoint } : {}), queueUrl: sqsQueueUrl(s, actor, sqsQueues?.queueUrl(actor)), auth: s.auth } }
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
    shareActorsAcrossNamespaces: settings.shareActorsAcrossNamespaces,
    queues,
    scaler,
    runtimeScript: o.runtimeScript,
    registry: o.registry,
    logger: o.logger,
    onLeadershipChange: o.onLeadershipChange,
    systemNamespace: settings.leaseNamespace,
    endActors: settings.endActors,
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
