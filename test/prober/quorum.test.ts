/**
 * Delivery prober, issue 17 (RabbitMQ quorum queues): a message that crashes its sidecar on every
 * delivery ends in the DLQ after the broker's delivery limit; envelopes waiting in retry tiers
 * survive their actor queue going missing and a broker restart. The last two run on a private node.
 */
import { scenarioTests } from './run-scenarios.js'

scenarioTests(['sidecar-crash-loop', 'retry-tier-queue-missing', 'broker-restart-during-retries'])
