/** Registers short (CI) runs of the named prober scenarios as tap tests. */
import t from 'tap'
import { formatReport } from './prober.js'
import { runScenario } from './scenarios.js'

export function scenarioTests(names: string[], transport: 'rabbitmq' | 'sqs' = 'rabbitmq'): void {
  // Each scenario starts real runtimes and sidecar processes; a few start a private broker.
  t.setTimeout(15 * 60_000)
  for (const name of names) {
    t.test(`prober scenario: ${name} (${transport})`, async (t) => {
      const logs: string[] = []
      const r = await runScenario(name, { transport, n: Number(process.env.ASYA_PROBER_CI_N ?? 100), onLog: (actor, line) => logs.push(`${actor}: ${line}`) })
      t.comment(formatReport(name, r.report))
      // Only a deleted queue may take messages with it (the broker reports how many it destroyed).
      t.equal(r.report.lost, Number(r.extra['destroyedByDelete'] ?? 0), 'nothing lost')
      t.same(r.problems, [], 'no problems')
      if (r.problems.length > 0) t.comment(logs.slice(-40).join('\n'))
    })
  }
}
