/**
 * Delivery prober, issue 16 (SPEC §13): fault scenarios with every actor at ASYA_CONCURRENCY=8, and
 * with every actor at ASYA_BATCH_SIZE=16 (batch handlers; a failing slot holds its exception).
 * Nothing lost; rolling SIGTERM and handler timeouts: no duplicates, as at the defaults. A run also
 * fails when its calls never overlapped or no batch of more than one formed (tuning.ts).
 *
 * CI time is shared, so each mode runs the scenarios where it changes most (the full set in both
 * modes passes too: `npm run prober -- --count 100 --concurrency 8` / `--batch-size 16`, results in
 * docs/reliability.md):
 * - concurrency 8: a SIGKILLed sidecar's window of 16 comes back; a SIGKILLed runtime cuts 8 calls
 *   at once; SIGTERM drains 8 calls in flight; one hung call among 8 (the others are cut off by
 *   the runtime's replacement and retried);
 * - batch 16: a broker restart while batches publish and ack together (coalesced `multiple` acks);
 *   every slot failing (poison) and one slot failing (flaky) retried on their own; a hung batch
 *   (all its envelopes time out, none twice).
 */
import { scenarioTests } from './run-scenarios.js'

scenarioTests(['sidecar-sigkill', 'runtime-sigkill', 'rolling-sigterm', 'handler-timeout'], 'rabbitmq', undefined, { tuning: { concurrency: 8 } })
scenarioTests(['broker-restart', 'poison', 'flaky-handler', 'handler-timeout'], 'rabbitmq', undefined, { tuning: { batchSize: 16 } })
