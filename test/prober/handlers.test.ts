/** Delivery prober, handler and input faults (issue 8): nothing lost, no hot loops, sidecar stays ready. */
import { scenarioTests } from './run-scenarios.js'

scenarioTests(['baseline', 'handler-timeout', 'queue-deleted', 'flaky-handler', 'poison', 'malformed-sweep'])
