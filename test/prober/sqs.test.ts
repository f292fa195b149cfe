/** Delivery prober on SQS (fauxqs) for the scenarios that apply to it (issue 8). */
import { scenarioTests } from './run-scenarios.js'

scenarioTests(['baseline', 'sidecar-sigkill', 'runtime-sigkill', 'rolling-sigterm', 'handler-timeout', 'flaky-handler', 'poison'], 'sqs')
