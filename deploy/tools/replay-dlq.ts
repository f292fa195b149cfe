/**
 * Replays dead letters of one actor on RabbitMQ: moves messages from `asya-<actor>-dlq` back to the
 * actor's queue (exchange `asya`, routing key `<actor>`), one at a time, each published persistent
 * and mandatory with a publisher confirm before the dead letter is acked — a crash in between
 * duplicates at most one message and never loses one. Dead-letter headers (`x-asya-reason`,
 * `x-asya-error`, `x-asya-attempts`, `x-asya-actor`, `x-asya-attempt`) are dropped so the actor
 * counts attempts afresh; `x-asya-hops` is kept (the loop guard still applies).
 *
 *   node --import ./scripts/register-ts.mjs deploy/tools/replay-dlq.ts --actor classify [--max 100] [--dry-run]
 *
 * Connection: ASYA_RABBITMQ_URL, or ASYA_RABBITMQ_HOST/PORT/USERNAME/PASSWORD/VHOST (as the
 * system process); ASYA_RABBITMQ_EXCHANGE (default asya). On SQS use
 * `aws sqs start-message-move-task` (docs/operations.md).
 */
import amqp from 'amqplib'
import { amqpUrl, redactUrl } from '../../src/transport/rabbitmq-transport.js'

const DEAD_LETTER_HEADERS = ['x-asya-reason', 'x-asya-error', 'x-asya-attempts', 'x-asya-actor', 'x-asya-attempt']

export interface ReplayOptions {
  url: string
  exchange: string
  actor: string
  /** Stop after this many messages. @default all that are in the DLQ when the replay starts */
  max?: number
  /** List the dead letters (reason, error) and leave them where they are. */
  dryRun?: boolean
  log?: (line: string) => void
}

export interface ReplayResult {
  replayed: number
  /** Reasons seen, with counts. */
  reasons: Record<string, number>
}

export async function replayDlq(o: ReplayOptions): Promise<ReplayResult> {
  const log = o.log ?? ((l: string) => process.stdout.write(l + '\n'))
  const dlq = `asya-${o.actor}-dlq`
  const conn = await amqp.connect(o.url)
  const result: ReplayResult = { replayed: 0, reasons: {} }
  try {
    const ch = await conn.createConfirmChannel()
    let returned: string | undefined
    ch.on('return', (m: amqp.Message) => {
      returned = m.fields.routingKey
    })
    // Bounded by what is there now: a message that fails again and returns to the DLQ during the
    // replay is not picked up a second time.
    const { messageCount } = await ch.checkQueue(dlq)
    const limit = Math.min(messageCount, o.max ?? messageCount)
    const seen: amqp.GetMessage[] = []
    for (let i = 0; i < limit; i++) {
      const msg = await ch.get(dlq, { noAck: false })
      if (msg === false) break
      const headers = { ...(msg.properties.headers ?? {}) } as Record<string, unknown>
      const reason = String(headers['x-asya-reason'] ?? 'unknown')
      result.reasons[reason] = (result.reasons[reason] ?? 0) + 1
      if (o.dryRun) {
        log(`${String(msg.properties.messageId ?? '-')}\t${reason}\t${String(headers['x-asya-error'] ?? '')}`)
        seen.push(msg)
        continue
      }
      for (const h of DEAD_LETTER_HEADERS) delete headers[h]
      returned = undefined
      ch.publish(o.exchange, o.actor, msg.content, {
        persistent: true,
        mandatory: true,
        contentType: msg.properties.contentType ?? 'application/json',
        ...(msg.properties.messageId !== undefined ? { messageId: msg.properties.messageId as string } : {}),
        headers,
      })
      try {
        await ch.waitForConfirms()
      } catch (err) {
        ch.nack(msg, false, true)
        throw new Error(`broker refused the replayed message; it stays in ${dlq}: ${String(err)}`)
      }
      if (returned !== undefined) {
        ch.nack(msg, false, true)
        throw new Error(`no queue is bound to routing key "${o.actor}" on exchange "${o.exchange}"; the message stays in ${dlq}`)
      }
      ch.ack(msg)
      result.replayed++
    }
    // Dry run: give every inspected message back, in order, untouched.
    if (seen.length > 0) ch.nackAll(true)
    await ch.close()
  } finally {
    await conn.close().catch(() => undefined)
  }
  return result
}

function urlFromEnv(env: NodeJS.ProcessEnv): string {
  if (env.ASYA_RABBITMQ_URL) return env.ASYA_RABBITMQ_URL
  return amqpUrl({
    host: env.ASYA_RABBITMQ_HOST ?? 'localhost',
    port: Number(env.ASYA_RABBITMQ_PORT ?? 5672),
    username: env.ASYA_RABBITMQ_USERNAME ?? 'guest',
    password: env.ASYA_RABBITMQ_PASSWORD ?? 'guest',
    vhost: env.ASYA_RABBITMQ_VHOST ?? '/',
    tls: env.ASYA_RABBITMQ_TLS === 'true',
  })
}

async function main(argv: string[]): Promise<number> {
  let actor: string | undefined
  let max: number | undefined
  let dryRun = false
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--actor') actor = argv[++i]
    else if (a === '--max') max = Number(argv[++i])
    else if (a === '--dry-run') dryRun = true
    else {
      process.stderr.write(`unknown argument ${String(a)}\nusage: replay-dlq --actor <name> [--max N] [--dry-run]\n`)
      return 2
    }
  }
  if (!actor || !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(actor) || (max !== undefined && !(Number.isInteger(max) && max > 0))) {
    process.stderr.write('usage: replay-dlq --actor <name> [--max N] [--dry-run]   (actor: DNS-1123 label; N > 0)\n')
    return 2
  }
  const url = urlFromEnv(process.env)
  const exchange = process.env.ASYA_RABBITMQ_EXCHANGE ?? 'asya'
  try {
    const r = await replayDlq({ url, exchange, actor, ...(max !== undefined ? { max } : {}), dryRun })
    process.stderr.write(`${dryRun ? 'listed' : 'replayed'} ${dryRun ? Object.values(r.reasons).reduce((a, b) => a + b, 0) : r.replayed} from asya-${actor}-dlq via ${redactUrl(url)} (reasons: ${JSON.stringify(r.reasons)})\n`)
    return 0
  } catch (err) {
    process.stderr.write(`replay failed: ${err instanceof Error ? err.message : String(err)}\n`)
    return 1
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then((code) => process.exit(code))
}
