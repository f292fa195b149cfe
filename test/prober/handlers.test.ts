/** Delivery prober, handler and input faults (issue 8): nothing lost, no hot loops, sidecar stays ready. */
import { scenarioTests } from './run-scenarios.js'

scenarioTests(['baseline', 'handler-timeout', 'queue-deleted', 'flaky-handler', 'poison', 'malformed-sweep'])

import t from 'tap'
import { SCENARIOS } from './scenarios.js'

t.test('every prober scenario runs in CI (faults.test.ts + handlers.test.ts)', async (t) => {
  const covered = ['broker-restart', 'connection-cut', 'sidecar-sigkill', 'runtime-sigkill', 'rolling-sigterm', 'baseline', 'handler-timeout', 'queue-deleted', 'flaky-handler', 'poison', 'malformed-sweep']
  t.same(Object.keys(SCENARIOS).sort(), covered.sort())
})
