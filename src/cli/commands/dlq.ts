/** `asya dlq list ACTOR` and `asya dlq replay ACTOR`: dead letters on every transport. */
import { Command, Option } from 'commander'

import { brokerOptions, Brokers, type BrokerFlags } from '../brokers.js'
import { deadLetterCount, listDeadLetters, replayDeadLetters, type DeadLetter } from '../dead-letters.js'
import { withExamples } from '../help.js'
import { CliError, usageError, type CliIo } from '../io.js'
import { structured, table } from '../output.js'
import { dlqName, isValidActorName } from '../../names.js'

function positiveInt(flag: string) {
  return (v: string): number => {
    const n = Number(v)
    if (!Number.isInteger(n) || n <= 0) throw usageError(`${flag} must be a positive integer, got ${JSON.stringify(v)}`)
    return n
  }
}

function checkActor(actor: string): void {
  if (!isValidActorName(actor)) throw usageError(`actor ${JSON.stringify(actor)} is not a valid actor name (a DNS-1123 label: lower-case letters, digits, '-', at most 63)`)
}

const firstLine = (s: string | undefined, width = 80): string => {
  const line = (s ?? '').split('\n').find((l) => l.trim() !== '') ?? ''
  return line.length > width ? `${line.slice(0, width - 1)}…` : line || '-'
}

export function deadLetterTable(letters: readonly DeadLetter[]): string {
  return table(['ID', 'REASON', 'ATTEMPTS', 'ERROR'], letters.map((l) => [l.id ?? '-', l.reason, l.attempts === undefined ? '-' : String(l.attempts), firstLine(l.error)]))
}

export function registerDlq(program: Command, io: CliIo): void {
  const dlq = program.command('dlq').summary('list and replay dead letters (asya-<actor>-dlq)').description('Dead letters of an actor: the messages its sidecar gave up on, in asya-<actor>-dlq, with the reason, attempts and last error the transport recorded.')
  withExamples(dlq, [
    ['asya dlq list classify', 'what classify gave up on, and why'],
    ['asya dlq replay classify --max 10', 'move ten back to asya-classify, after confirming'],
  ])

  const list = dlq
    .command('list')
    .summary('show the dead letters of an actor: id, reason, attempts, first line of the error')
    .description('Reads the dead letters of ACTOR and gives every one back untouched (on RabbitMQ to the tail of the DLQ). Bounded by --max.')
    .argument('<actor>', 'actor name')
    .addOption(new Option('--max <n>', 'show at most N').default(100).argParser(positiveInt('--max')))
    .addOption(new Option('-o, --output <format>', 'output format (json/yaml include headers and body)').choices(['json', 'yaml']))
  brokerOptions(list)
  list.action(async (actor: string, flags: BrokerFlags & { max: number; output?: 'json' | 'yaml' }) => {
    checkActor(actor)
    const brokers = new Brokers(flags, io.env)
    try {
      const t = await brokers.get(brokers.defaultTransport)
      const r = await listDeadLetters(t, actor, { max: flags.max }).catch((err: unknown) => {
        throw brokers.fail(brokers.defaultTransport, err, `reading ${dlqName(actor)}`)
      })
      if (r.letters.length < r.expected) io.stderr(`warning: ${r.expected} dead letters expected, ${r.letters.length} arrived (another consumer on the DLQ?)\n`)
      if (flags.output) io.stdout(structured(flags.output, { kind: 'DeadLetterList', actor, items: r.letters }))
      else if (r.letters.length === 0) io.stderr(`No dead letters in asya-${actor}-dlq.\n`)
      else io.stdout(deadLetterTable(r.letters))
    } finally {
      await brokers.close()
    }
  })
  withExamples(list, [
    ['asya dlq list classify', 'on the default transport (ASYA_TRANSPORT)'],
    ['asya dlq list classify --transport sqs --region eu-west-1 -o json', 'with headers and bodies'],
  ])

  const replay = dlq
    .command('replay')
    .summary('move dead letters back to the actor\'s queue (confirmed, bounded)')
    .description(
      'Moves dead letters of ACTOR back to asya-<actor>, one at a time: each is published with the broker\'s confirm before the dead letter is removed, so a crash duplicates at most one message and never loses one. Dead-letter headers (reason, error, attempts) are dropped so the actor counts attempts afresh; the hop count is kept.\n\n' +
        'Bounded by what the DLQ holds when the replay starts (a message that fails again is not replayed twice) and by --max. Asks for confirmation on a terminal; pass --yes in scripts.',
    )
    .argument('<actor>', 'actor name')
    .addOption(new Option('--max <n>', 'replay at most N').argParser(positiveInt('--max')))
    .option('--dry-run', 'list what would be replayed and change nothing')
    .option('-y, --yes', 'do not ask for confirmation')
  brokerOptions(replay)
  replay.action(async (actor: string, flags: BrokerFlags & { max?: number; dryRun?: boolean; yes?: boolean }) => {
    checkActor(actor)
    const brokers = new Brokers(flags, io.env)
    const name = brokers.defaultTransport
    try {
      const t = await brokers.get(name)
      if (flags.dryRun) {
        const r = await listDeadLetters(t, actor, flags.max !== undefined ? { max: flags.max } : {}).catch((err: unknown) => {
          throw brokers.fail(name, err, `reading ${dlqName(actor)}`)
        })
        if (r.letters.length > 0) io.stdout(deadLetterTable(r.letters))
        io.stderr(`dry run: would replay ${r.letters.length} dead letters from asya-${actor}-dlq to asya-${actor} on ${brokers.where(name)}; nothing changed\n`)
        return
      }
      const held = await deadLetterCount(t, actor).catch((err: unknown) => {
        throw brokers.fail(name, err, `reading ${dlqName(actor)}`)
      })
      const n = Math.min(held, flags.max ?? held)
      if (n === 0) {
        io.stderr(`No dead letters in asya-${actor}-dlq.\n`)
        return
      }
      if (!flags.yes) {
        if (!io.confirm) throw usageError(`replaying ${n} dead letters needs confirmation: run it on a terminal or pass --yes`)
        if (!(await io.confirm(`Replay ${n} dead letters from asya-${actor}-dlq to asya-${actor} on ${brokers.where(name)}? [y/N] `))) throw new CliError('replay cancelled; nothing changed')
      }
      try {
        const r = await replayDeadLetters(t, actor, { max: n, onReplayed: (l) => io.stderr(`replayed ${l.id ?? '-'} (${l.reason})\n`) })
        io.stderr(`replayed ${r.replayed} of ${r.expected} dead letters from asya-${actor}-dlq (reasons: ${Object.entries(r.reasons).map(([k, v]) => `${k} ${v}`).join(', ')})\n`)
        if (r.replayed < r.expected) throw new CliError(`only ${r.replayed} of ${r.expected} dead letters arrived within the timeout (another consumer on the DLQ?); run the command again`)
      } catch (err) {
        throw brokers.fail(name, err, `replay to asya-${actor}`)
      }
    } finally {
      await brokers.close()
    }
  })
  withExamples(replay, [
    ['asya dlq replay classify --dry-run', 'see what would be replayed'],
    ['asya dlq replay classify --max 10', 'replay ten, after confirming'],
    ['asya dlq replay classify --yes --transport sqs --region eu-west-1', 'in a script, on SQS'],
  ])
}
