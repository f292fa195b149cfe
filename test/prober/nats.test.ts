/**
 * Delivery prober on NATS JetStream (a private nats-server per scenario): broker restart, sidecar
 * and runtime SIGKILL, drain (rolling SIGTERM), poison, handler timeout. The fault-free baseline and
 * the flaky handler add nothing transport-specific beyond these and test/sidecar/nats.test.ts, and
 * CI time is shared (`npm run prober -- --transport nats` style runs can add them).
 */
import { scenarioTests } from './run-scenarios.js'

scenarioTests(['broker-restart', 'sidecar-sigkill', 'runtime-sigkill', 'rolling-sigterm', 'handler-timeout', 'poison'], 'nats')
