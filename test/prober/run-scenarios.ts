/** Registers short (CI) runs of the named prober scenarios as tap tests. */
import t from 'tap'
import { formatReport } from './prober.js'
import { runScenario, type RabbitQueueType } from './scenarios.js'
import { tuningLabel, type ActorTuning } from './tuning.js'

export interface ScenarioTestOptions {
  /** Every actor at this concurrency / batch size (SPEC §13); in the test name. @default the defaults */
  tuning?: ActorTuning
}

export function scenarioTests(
  names: string[],
  transport: 'rabbitmq' | 'sqs' | 'nats' = 'rabbitmq',
  queueType?: RabbitQueueType,
  options: ScenarioTestOptions = {},
): void {
  // Each scenario starts real runtimes and sidecar processes; a few start a private broker.
  t.setTimeout(15 * 60_000)
  for (const name of names) {
    const labels = [transport, ...(queueType ? [`${queueType} queues`] : []), ...(options.tuning ? [tuningLabel(options.tuning)] : [])]
    t.test(`prober scenario: ${name} (${labels.join(', ')})`, async (t) => {
      const logs: string[] = []
      const r = await runScenario(name, {
        transport,
        n: Number(process.env.ASYA_PROBER_CI_N ?? 100),
        ...(queueType ? { queueType } : {}),
        ...(options.tuning ? { tuning: options.tuning } : {}),
        onLog: (actor, line) => logs.push(`${actor}: ${line}`),
      })
      t.comment(formatReport(name, r.report))
      if (r.extra['handlerStats']) t.comment(`handler calls at once / largest batch per actor: ${JSON.stringify(r.extra['handlerStats'])}`)
      // Only a deleted queue may take messages with it (the broker reports how many it destroyed).
      t.equal(r.report.lost, Number(r.extra['destroyedByDelete'] ?? 0), 'nothing lost')
      t.same(r.problems, [], 'no problems')
      if (r.problems.length > 0) t.comment(logs.slice(-40).join('\n'))
    })
  }
}
