/**
 * `npm run demo`: a real Asya pipeline on one machine, no broker, no cluster. Each actor is a real
 * `asya_runtime.py` process running a handler from pipeline.py, beside an in-process sidecar; the
 * sidecars talk over the in-memory transport (or RabbitMQ with ASYA_TRANSPORT=rabbitmq). Sends a
 * few envelopes, prints every hop, prints what reached happy-end and error-end, exits 0.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createLogger } from '../../src/logger.js'
import { RuntimeProcess } from '../../src/runtime/runtime-process.js'
import { MemoryBroker } from '../../src/transport/memory-transport.js'
import { createTransport, readTransportSettings } from '../../src/transport/create-transport.js'
import { EnvReader } from '../../src/config/env.js'
import type { Delivery, Transport } from '../../src/transport/transport.js'
import { readSidecarConfig } from '../../sidecar/config.js'
import { Sidecar } from '../../sidecar/sidecar.js'
import type { SidecarEvent } from '../../sidecar/message-processor.js'

const here = dirname(fileURLToPath(import.meta.url))
const ACTORS: Array<{ name: string; handler: string; mode: 'payload' | 'envelope' }> = [
  { name: 'normalize', handler: 'pipeline.normalize', mode: 'payload' },
  { name: 'classify', handler: 'pipeline.Classifier.classify', mode: 'payload' },
  { name: 'judge', handler: 'pipeline.judge', mode: 'envelope' },
  { name: 'split', handler: 'pipeline.split', mode: 'payload' },
  { name: 'answer', handler: 'pipeline.answer', mode: 'payload' },
]
const INPUTS = [
  { id: 'doc-1', text: '  Asya routes   envelopes.  Actors scale to zero! Handlers are plain Python.' },
  { id: 'doc-2', text: 'How does the route travel with the envelope?' },
  { id: 'doc-3', text: '   ' }, // the handler raises: this one ends in error-end
]
const EXPECTED_FINALS = 3 + 1 + 1 // three sentences, one answer, one error

const color = process.stdout.isTTY ? (c: number, s: string) => `\x1b[${c}m${s}\x1b[0m` : (_c: number, s: string) => s

function describe(e: SidecarEvent): string | undefined {
  if (e.type === 'sent') return `  ${e.actor.padEnd(9)} → ${e.destination.padEnd(9)} ${e.id}`
  if (e.type === 'retry') return `  ${e.actor.padEnd(9)} ↻ retry in ${e.delayMs} ms (${e.reason})`
  if (e.type === 'dead_letter') return `  ${e.actor.padEnd(9)} ✗ dead-lettered (${e.reason})`
  return undefined
}

async function main(): Promise<void> {
  const env = process.env
  const transportName = env.ASYA_TRANSPORT ?? 'memory'
  const logLevel = env.ASYA_LOG_LEVEL ?? 'error'
  const logger = createLogger('asya-demo', { level: logLevel })
  const broker = new MemoryBroker()
  const baseEnv = { ...env, ASYA_TRANSPORT: transportName, ASYA_LOG_LEVEL: logLevel }
  const makeTransport = async (name: string): Promise<Transport> => {
    const r = new EnvReader(baseEnv)
    const settings = readTransportSettings(r)
    r.finish()
    return createTransport(settings, { memoryBroker: broker, logger, connectionName: `asya-demo-${name}` })
  }

  console.log(`Asya demo: ${ACTORS.length} Python actors on the ${transportName} transport\n`)
  const dirs: string[] = []
  const runtimes: RuntimeProcess[] = []
  const sidecars: Sidecar[] = []
  const client = await makeTransport('client')
  try {
    await client.connect()
    for (const end of ['happy-end', 'error-end']) await client.ensureQueue(end)

    for (const a of ACTORS) {
      const socketDir = mkdtempSync(join(tmpdir(), `asya-demo-${a.name}-`))
      dirs.push(socketDir)
      const runtime = new RuntimeProcess({ handler: a.handler, mode: a.mode, socketDir, cwd: here, pythonPath: [here], env: { ASYA_LOG_LEVEL: 'WARNING' } })
      runtimes.push(runtime)
      await runtime.start()
      const config = readSidecarConfig({ ...baseEnv, ASYA_ACTOR_NAME: a.name, ASYA_SOCKET_DIR: socketDir, ASYA_RUNTIME_TIMEOUT: '30s' })
      const sidecar = new Sidecar({
        config,
        transport: await makeTransport(a.name),
        logger: logger.child({ actor: a.name }),
        serveHttp: false,
        onEvent: (e) => {
          const line = describe(e)
          if (line) console.log(line)
        },
      })
      sidecars.push(sidecar)
      await sidecar.start()
      console.log(`${color(32, 'started')} ${a.name.padEnd(9)} handler=${a.handler} (${a.mode} mode)`)
    }

    const finals: Array<{ end: string; body: Record<string, unknown> }> = []
    let resolveDone!: () => void
    const done = new Promise<void>((r) => (resolveDone = r))
    const collect = (end: string) => async (d: Delivery) => {
      finals.push({ end, body: JSON.parse(d.body.toString()) as Record<string, unknown> })
      await d.ack()
      if (finals.length >= EXPECTED_FINALS) resolveDone()
    }
    await client.consume('happy-end', collect('happy-end'), { prefetch: 10 })
    await client.consume('error-end', collect('error-end'), { prefetch: 10 })

    console.log('\nsending:')
    for (const input of INPUTS) {
      const envelope = {
        id: input.id,
        route: { actors: ['normalize', 'classify', 'judge'], current: 0 },
        headers: { trace_id: `trace-${input.id}` },
        payload: { text: input.text },
      }
      console.log(`  client    → normalize ${input.id}: ${JSON.stringify(input.text)}`)
      await client.publish('normalize', Buffer.from(JSON.stringify(envelope)))
    }
    console.log('\nhops:')
    const timeout = setTimeout(() => {
      console.error(`demo: only ${finals.length} of ${EXPECTED_FINALS} envelopes arrived within 60 s`)
      process.exit(1)
    }, 60_000)
    await done
    clearTimeout(timeout)

    console.log('\nresults:')
    finals.sort((a, b) => String(a.body.id).localeCompare(String(b.body.id)))
    for (const f of finals) {
      const mark = f.end === 'happy-end' ? color(32, 'happy-end') : color(31, 'error-end')
      const payload = f.body.payload as Record<string, unknown>
      const shown = f.end === 'error-end' ? { error: payload.error, reason: (payload.details as Record<string, unknown>).reason, message: (payload.details as Record<string, unknown>).message } : payload
      console.log(`  ${mark} ${String(f.body.id).padEnd(8)} route=${JSON.stringify((f.body.route as { actors: string[] }).actors)} headers=${JSON.stringify(f.body.headers)}`)
      console.log(`            ${JSON.stringify(shown)}`)
    }
    const ok = finals.filter((f) => f.end === 'happy-end').length === 4 && finals.filter((f) => f.end === 'error-end').length === 1
    console.log(`\n${ok ? color(32, 'demo ok') : color(31, 'demo: unexpected results')}: ${finals.length} envelopes reached an end actor`)
    process.exitCode = ok ? 0 : 1
  } finally {
    for (const s of sidecars) await s.stop()
    await client.close()
    for (const r of runtimes) await r.stop()
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  }
}

main().catch((err: unknown) => {
  console.error('demo failed:', err)
  process.exit(1)
})
