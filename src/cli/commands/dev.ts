/** `asya dev HANDLER_FILE --route a,b,c`: a local pipeline on the memory transport. */
import { existsSync, readFileSync } from 'node:fs'
import { Command, Option } from 'commander'
import { parseDuration } from '../../config/env.js'
import type { SidecarEvent } from '../../../sidecar/message-processor.js'
import { resolveActors } from '../dev-handlers.js'
import { runDevPipeline } from '../dev-pipeline.js'
import { withExamples } from '../help.js'
import { CliError, usageError, type CliIo } from '../io.js'
import { colours } from '../output.js'

const collect = (v: string, prev: string[] = []): string[] => [...prev, v]

function pairs(flag: string, values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const v of values) {
    const i = v.indexOf('=')
    if (i <= 0 || i === v.length - 1) throw usageError(`${flag} expects ACTOR=VALUE, got ${JSON.stringify(v)}`)
    out[v.slice(0, i)] = v.slice(i + 1)
  }
  return out
}

/** --file: one JSON document, or JSON Lines (one payload per line); `-` reads stdin. */
export function readPayloadFile(text: string, name: string): unknown[] {
  try {
    return [JSON.parse(text)]
  } catch {
    const lines = text.split('\n').filter((l) => l.trim() !== '')
    return lines.map((l, i) => {
      try {
        return JSON.parse(l) as unknown
      } catch (err) {
        throw usageError(`${name} line ${i + 1} is not JSON (the file is one JSON document or one JSON payload per line): ${(err as Error).message}`)
      }
    })
  }
}

export function hopLine(e: SidecarEvent, c: ReturnType<typeof colours>): string | undefined {
  const who = e.actor.padEnd(12)
  if (e.type === 'sent') {
    const to = e.kind === 'error_end' ? c.red(e.destination) : e.kind === 'happy_end' ? c.green(e.destination) : e.destination
    return `${who} → ${to}  ${e.id}`
  }
  if (e.type === 'retry') return `${who} ${c.yellow('↻')} ${e.id ?? ''} retry in ${e.delayMs} ms (${e.reason}, attempt ${e.attempt})`
  if (e.type === 'dead_letter') return `${who} ${c.red('✗')} ${e.id ?? ''} dead-lettered (${e.reason})`
  return undefined
}

interface DevFlags {
  route: string
  payload?: string[]
  file?: string
  actor?: string[]
  mode?: string[]
  timeout: string
  runtimeTimeout: string
  maxRetries?: string
  logLevel: string
}

export function registerDev(program: Command, io: CliIo): void {
  const cmd = program
    .command('dev')
    .summary('run a pipeline locally: real Python runtimes, in-process sidecars, memory transport')
    .description(
      'Runs the actors of --route from one Python file before any cluster exists: each actor is the function (or Class.method) of the same name in HANDLER_FILE (dashes read as underscores) unless --actor maps it, running in a real asya_runtime.py process beside an in-process sidecar, all on the memory transport (no broker).\n\n' +
        'Sends each payload as an envelope to the first actor, prints every hop on stderr and, once every envelope has ended, the final envelopes on stdout as a JSON array of {"end", "envelope"} ("happy-end", "error-end", or "dlq"). Exits 1 when any ended in error-end or a DLQ, or when --timeout passed first.\n\n' +
        'Actors a handler adds to the route at run time (envelope mode) must be started too: name them with --actor or --mode.',
    )
    .argument('<handler-file>', 'Python file with the handlers (plain functions, no Asya imports)')
    .requiredOption('--route <actors>', 'comma-separated actors, in order')
    .option('--payload <json>', 'a payload (repeat for several envelopes)', collect)
    .option('--file <file>', 'payloads: one JSON document, or one JSON payload per line; "-" for stdin')
    .option('--actor <actor=handler>', 'handler of an actor: module.function, module.Class.method, or function in HANDLER_FILE (repeatable)', collect)
    .option('--mode <actor=mode>', 'handler mode of an actor: payload (default) or envelope (repeatable)', collect)
    .addOption(new Option('--max-retries <n>', 'handler-error retries before error-end (ASYA_MAX_RETRIES)'))
    .option('--timeout <duration>', 'give up when the envelopes have not ended after this long', '60s')
    .option('--runtime-timeout <duration>', 'deadline of one handler call (ASYA_RUNTIME_TIMEOUT)', '30s')
    .addOption(new Option('--log-level <level>', 'sidecar and runtime logs on stderr').choices(['error', 'warn', 'info', 'debug']).default('error'))
    .action(async (handlerFile: string, flags: DevFlags) => {
      if (!existsSync(handlerFile)) throw usageError(`handler file ${handlerFile} does not exist`)
      const route = flags.route.split(',').map((s) => s.trim()).filter((s) => s !== '')
      if (route.length === 0) throw usageError('--route needs at least one actor, e.g. --route clean,classify')
      const explicit = pairs('--actor', flags.actor ?? [])
      const modesRaw = pairs('--mode', flags.mode ?? [])
      const modes: Record<string, 'payload' | 'envelope'> = {}
      for (const [a, m] of Object.entries(modesRaw)) {
        if (m !== 'payload' && m !== 'envelope') throw usageError(`--mode ${a}=${m}: the mode is payload or envelope`)
        modes[a] = m
      }
      const timeoutMs = parseDuration(flags.timeout)
      if (timeoutMs === undefined || parseDuration(flags.runtimeTimeout) === undefined) throw usageError('--timeout / --runtime-timeout take a duration like 30s, 2m or 500ms')
      const payloads: unknown[] = []
      for (const p of flags.payload ?? []) {
        try {
          payloads.push(JSON.parse(p))
        } catch (err) {
          throw usageError(`--payload ${JSON.stringify(p.length > 60 ? `${p.slice(0, 60)}…` : p)} is not JSON: ${(err as Error).message} (quote it for the shell: --payload '{"text": "hi"}')`)
        }
      }
      if (flags.file !== undefined) {
        const text = flags.file === '-' ? io.readStdin() : existsSync(flags.file) ? readFileSync(flags.file, 'utf8') : undefined
        if (text === undefined) throw usageError(`--file ${flags.file} does not exist`)
        payloads.push(...readPayloadFile(text, flags.file))
      }
      if (payloads.length === 0) throw usageError('nothing to send: give --payload JSON (repeatable) or --file FILE')
      const names = [...new Set([...route, ...Object.keys(explicit), ...Object.keys(modes)])]
      const resolved = resolveActors(handlerFile, names, explicit, modes)
      if (resolved.problems.length > 0) throw usageError(resolved.problems.join('\nerror: '))
      const c = colours(io.stderrTty !== undefined)
      for (const a of resolved.actors) io.stderr(`${c.dim('actor')} ${a.name.padEnd(12)} ${a.handler} (${a.mode ?? 'payload'} mode)\n`)
      const stamp = Date.now().toString(36)
      const envelopes = payloads.map((payload, i) => ({ id: `dev-${stamp}-${i + 1}`, route: { actors: route, current: 0 }, headers: {}, payload }))
      for (const e of envelopes) io.stderr(`${'client'.padEnd(12)} → ${route[0]}  ${e.id}\n`)
      const result = await runDevPipeline({
        actors: resolved.actors,
        moduleDir: resolved.moduleDir,
        envelopes,
        timeoutMs,
        runtimeTimeout: flags.runtimeTimeout,
        logLevel: flags.logLevel,
        env: { ASYA_TRANSPORT: 'memory', ...(flags.maxRetries !== undefined ? { ASYA_MAX_RETRIES: flags.maxRetries } : {}) },
        onEvent: (e) => {
          const line = hopLine(e, c)
          if (line) io.stderr(line + '\n')
        },
      })
      io.stdout(JSON.stringify(result.finals, null, 2) + '\n')
      const failed = result.finals.filter((f) => f.end !== 'happy-end').length
      io.stderr(`${result.finals.length} envelopes ended: ${result.finals.length - failed} in happy-end, ${failed} in error-end or a DLQ\n`)
      if (result.timedOut) throw new CliError(`some envelopes had not ended after ${flags.timeout} (a slow handler? an actor added to the route at run time but not started: name it with --actor)`)
      if (failed > 0) throw new CliError(`${failed} envelope(s) failed`)
    })
  withExamples(cmd, [
    ["asya dev pipeline.py --route normalize,classify --payload '{\"text\": \"Hi there\"}'", 'two actors, one envelope'],
    ['asya dev pipeline.py --route normalize,judge --mode judge=envelope --actor split=pipeline.split --file inputs.jsonl', 'an envelope-mode actor that routes to split'],
    ["asya dev handlers.py --route clean --actor clean=handlers.Cleaner.run --payload '{}' | jq '.[0].envelope.payload'", 'a method, result to jq'],
  ])
}
