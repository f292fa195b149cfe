/** Delivery prober, infrastructure faults (issue 8): nothing lost; rolling SIGTERM: no duplicates. */
import { scenarioTests } from './run-scenarios.js'

scenarioTests(['broker-restart', 'connection-cut', 'sidecar-sigkill', 'runtime-sigkill', 'rolling-sigterm'])
