/** `asya queues`: depth, in-flight, consumers and DLQ depth of every actor queue. */
import { Command } from 'commander'

import { brokerOptions, Brokers, type BrokerFlags } from '../brokers.js'
import { withExamples } from '../help.js'
import type { CliIo } from '../io.js'
import { connectKube, type KubeFlags } from '../kube.js'
import { count, outputOption, structured, table } from '../output.js'
import { actorTransport, kubeOptions, listActorWorkloads } from './actors.js'
import { dlqActor, dlqName, queueName } from '../../names.js'

export interface QueueRow {
  queue: string
  actor: string
  transport: string
  messages?: number
  inFlight?: number
  consumers?: number
  dlq: { queue: string; messages?: number }
  /** namespace/kind/name of the workloads consuming it (queues are per broker, not per namespace). */
  workloads: string[]
  error?: string
}

const END_ACTORS = ['happy-end', 'error-end']

export function registerQueues(program: Command, io: CliIo): void {
  const cmd = program
    .command('queues')
    .summary('queue depth, in-flight, consumers and DLQ depth per actor queue')
    .description(
      'Shows every actor queue with its depth (ready messages), in-flight (delivered, not yet acked), consumers and the depth of its dead-letter queue, on every transport the actors use.\n\n' +
        'Without ACTOR arguments the actors come from the cluster (labelled workloads, -n / -A), plus the end actors happy-end and error-end; with arguments only the broker is asked (no cluster needed), on --transport. `-` means the transport cannot tell (SQS has no consumer count).',
    )
    .argument('[actor...]', 'actors whose queues to show (no cluster needed)')
    .addOption(outputOption())
  kubeOptions(cmd)
  brokerOptions(cmd)
  cmd.action(async (actors: string[], flags: KubeFlags & BrokerFlags & { output?: string }) => {
    const brokers = new Brokers(flags, io.env)
    try {
      const wanted = new Map<string, { actor: string; transport: string; workloads: string[] }>()
      const add = (actor: string, transport: string, workload?: string): void => {
        const key = `${transport}/${actor}`
        const e = wanted.get(key) ?? { actor, transport, workloads: [] }
        if (workload !== undefined) e.workloads.push(workload)
        wanted.set(key, e)
      }
      if (actors.length > 0) for (const a of actors) add(a, brokers.defaultTransport)
      else {
        const kube = connectKube(flags, io.env)
        for (const w of await listActorWorkloads(kube)) add(w.actor, actorTransport(w, brokers.defaultTransport), `${w.obj.metadata?.namespace}/${w.kind.toLowerCase()}/${w.obj.metadata?.name}`)
        const transports = new Set([brokers.defaultTransport, ...[...wanted.values()].map((e) => e.transport)])
        for (const t of transports) for (const end of END_ACTORS) if (!wanted.has(`${t}/${end}`)) add(end, t)
      }
      const rows: QueueRow[] = []
      for (const e of [...wanted.values()].sort((a, b) => a.transport.localeCompare(b.transport) || a.actor.localeCompare(b.actor))) {
        const row: QueueRow = { queue: queueName(e.actor), actor: e.actor, transport: e.transport, dlq: { queue: dlqName(e.actor) }, workloads: e.workloads }
        try {
          const tr = await brokers.get(e.transport)
          const s = await tr.inspectQueue(e.actor)
          row.messages = s.messages
          if (s.inFlight !== undefined) row.inFlight = s.inFlight
          if (s.consumers !== undefined) row.consumers = s.consumers
          const d = await tr.inspectQueue(dlqActor(e.actor)).catch(() => undefined)
          if (d) row.dlq.messages = d.messages
        } catch (err) {
          row.error = brokers.fail(e.transport, err, `queue ${row.queue}`).message
          io.stderr(`warning: ${row.error}\n`)
        }
        rows.push(row)
      }
      if (flags.output === 'json' || flags.output === 'yaml') {
        io.stdout(structured(flags.output, { kind: 'QueueList', items: rows }))
        return
      }
      const wide = flags.output === 'wide'
      const q = (r: QueueRow, n: number | undefined): string => (r.error ? '?' : count(n))
      io.stdout(
        table(
          ['QUEUE', 'TRANSPORT', 'MESSAGES', 'IN-FLIGHT', 'CONSUMERS', 'DLQ', ...(wide ? ['WORKLOADS'] : [])],
          rows.map((r) => [r.queue, r.transport, q(r, r.messages), q(r, r.inFlight), q(r, r.consumers), q(r, r.dlq.messages), ...(wide ? [r.workloads.join(',') || '-'] : [])]),
        ),
      )
    } finally {
      await brokers.close()
    }
  })
  withExamples(cmd, [
    ['asya queues', 'queues of the actors in the current namespace, plus happy-end and error-end'],
    ['asya queues -A -o wide', 'every namespace, with the workloads behind each queue'],
    ['asya queues classify judge --transport sqs --region eu-west-1', 'ask the broker only'],
  ])
}
