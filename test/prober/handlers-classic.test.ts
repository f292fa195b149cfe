/**
 * The handler and input-fault scenarios of handlers.test.ts on upstream's classic queues
 * (ASYA_RABBITMQ_QUEUE_TYPE=classic, issue 17): quorum is the default, classic must keep working.
 */
import { scenarioTests } from './run-scenarios.js'

scenarioTests(['baseline', 'handler-timeout', 'queue-deleted', 'flaky-handler', 'poison', 'malformed-sweep'], 'rabbitmq', 'classic')
