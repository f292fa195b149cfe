/**
 * `npm run prober -- [--long] [--scenario name] [--transport rabbitmq|sqs|nats]
 * [--concurrency N] [--batch-size B [--batch-wait 20ms]]`: runs the fault
 * scenarios of test/prober/scenarios.ts on this machine and prints one report line each (exit 1 on
 * any loss). `--against` probes an existing pipeline instead (a real cluster's broker, configured
 * with the usual ASYA_* transport variables): `--against --actors a,b,c --count 1000`.
 */
import { parseArgs } from 'node:util'
import { createTransportFromEnv } from '../../src/transport/create-transport.js'
import { formatReport, runProbe } from './prober.js'
import { SCENARIOS, runScenario } from './scenarios.js'

const { values } = parseArgs({
  options: {
    long: { type: 'boolean', default: false },
    scenario: { type: 'string' },
    transport: { type: 'string', default: 'rabbitmq' },
    against: { type: 'boolean', default: false },
    actors: { type: 'string' },
    count: { type: 'string' },
    // Every actor of a scenario at this ASYA_CONCURRENCY / ASYA_BATCH_SIZE / ASYA_BATCH_WAIT (tuning.ts).
    concurrency: { type: 'string' },
    'batch-size': { type: 'string' },
    'batch-wait': { type: 'string' },
  },
})

let failed = false
if (values.against) {
  const transport = await createTransportFromEnv(process.env, { connectionName: 'asya-prober' })
  await transport.connect()
  const actors = (values.actors ?? '').split(',').filter(Boolean)
  if (actors.length === 0) throw new Error('--against needs --actors a,b,c')
  const report = await runProbe({ transport, actors, count: Number(values.count ?? 1000) })
  console.log(formatReport('against', report))
  console.log(JSON.stringify(report))
  failed = report.lost > 0
  await transport.close()
} else {
  const names = values.scenario ? [values.scenario] : Object.keys(SCENARIOS)
  const tuned = values.concurrency !== undefined || values['batch-size'] !== undefined
  const tuning = tuned
    ? {
        ...(values.concurrency ? { concurrency: Number(values.concurrency) } : {}),
        ...(values['batch-size'] ? { batchSize: Number(values['batch-size']) } : {}),
        ...(values['batch-wait'] ? { batchWait: values['batch-wait'] } : {}),
      }
    : undefined
  for (const name of names) {
    const result = await runScenario(name, {
      long: values.long,
      transport: values.transport as 'rabbitmq' | 'sqs' | 'nats',
      ...(values.count ? { n: Number(values.count) } : {}),
      ...(tuning ? { tuning } : {}),
    })
    const destroyed = result.extra['destroyedByDelete']
    console.log(
      formatReport(name, result.report) +
        (destroyed !== undefined ? ` destroyed_by_queue_delete=${String(destroyed)}` : '') +
        (result.extra['handlerStats'] ? ` handler_stats=${JSON.stringify(result.extra['handlerStats'])}` : '') +
        (result.problems.length ? ` PROBLEMS: ${result.problems.join('; ')}` : ''),
    )
    if (result.problems.length > 0) failed = true
  }
}
process.exit(failed ? 1 : 0)
