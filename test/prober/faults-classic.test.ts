/**
 * The infrastructure-fault scenarios of faults.test.ts on upstream's classic queues
 * (ASYA_RABBITMQ_QUEUE_TYPE=classic, issue 17): quorum is the default, classic must keep working.
 */
import { scenarioTests } from './run-scenarios.js'

scenarioTests(['broker-restart', 'connection-cut', 'sidecar-sigkill', 'runtime-sigkill', 'rolling-sigterm'], 'rabbitmq', 'classic')
