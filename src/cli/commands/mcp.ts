/**
 * `asya mcp …`: upstream `asya-mcp` compatible (same subcommands, global flags before the
 * subcommand, env, output), with its defects fixed: every documented env name works, `stream`
 * prints each update instead of `unknown:`, dashed tool flags reach the tool.
 */
import cliProgress from 'cli-progress'
import { Command, Option } from 'commander'
import { stringify } from 'yaml'
import { withExamples } from '../help.js'
import { CliError, usageError, type CliIo } from '../io.js'
import { envelopeIdOf, FINAL_STATUSES, GatewayClient, parseToolArgs, type EnvelopeUpdate, type McpTool } from '../mcp-client.js'

interface McpFlags {
  url?: string
  stream?: boolean
  debug?: boolean
}

const truthy = (v: string | undefined): boolean => v !== undefined && ['1', 'true', 'yes'].includes(v.toLowerCase())

/** Tool as upstream's YAML shows it: name, description, parameters {type, required[, details]}. */
export function toolView(tool: McpTool, details: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = { name: tool.name ?? '?', description: tool.description ?? '' }
  const props = tool.inputSchema?.properties ?? {}
  const required = new Set(tool.inputSchema?.required ?? [])
  if (Object.keys(props).length > 0) {
    const params: Record<string, unknown> = {}
    for (const [name, spec] of Object.entries(props)) {
      const p: Record<string, unknown> = { type: spec.type ?? 'any', required: required.has(name) }
      if (details) {
        if (spec.description) p.description = spec.description
        if ('default' in spec) p.default = spec.default
        if (spec.enum) p.options = spec.enum
      }
      params[name] = p
    }
    out.parameters = params
  }
  return out
}

/** One plain line per update (no terminal, or `asya mcp stream`). */
export function updateLine(u: EnvelopeUpdate): string {
  const pct = u.progress_percent !== undefined ? `${Math.round(u.progress_percent)}% ` : ''
  const where = [u.actor, u.envelope_state].filter((x) => x !== undefined && x !== '').join(' ')
  if (u.status === 'succeeded') return `[+] ${pct}succeeded${where ? ` (${where})` : ''}`
  if (u.status === 'failed') return `[-] failed: ${u.error ?? u.message ?? 'unknown error'}`
  return `[.] ${pct}${u.status}${where ? ` ${where}` : ''}${u.message ? `: ${u.message}` : ''}`
}

/** Follows an envelope: a live bar on a terminal, plain lines otherwise, JSON lines with --debug. */
async function follow(client: GatewayClient, id: string, io: CliIo, debug: boolean): Promise<EnvelopeUpdate | Record<string, unknown>> {
  let final: EnvelopeUpdate | undefined
  const tty = io.stderrTty
  const bar =
    tty && !debug
      ? new cliProgress.SingleBar(
          { stream: tty, format: 'Processing: {percentage}% |{bar}| {step}', barsize: 30, hideCursor: true, clearOnComplete: false, noTTYOutput: false, fps: 20 },
          cliProgress.Presets.shades_classic,
        )
      : undefined
  let started = false
  let lastLine = ''
  try {
    await client.stream(
      id,
      (u) => {
        if (FINAL_STATUSES.has(u.status)) final = u
        if (debug) return
        if (bar) {
          const pct = FINAL_STATUSES.has(u.status) && u.status === 'succeeded' ? 100 : Math.max(0, Math.min(100, Math.round(u.progress_percent ?? 0)))
          const step = [u.actor, u.envelope_state ?? u.status].filter((x) => x !== undefined && x !== '').join(' | ')
          if (!started) bar.start(100, pct, { step })
          else bar.update(pct, { step })
          started = true
        } else {
          const line = updateLine(u)
          if (line !== lastLine) io.stderr(line + '\n')
          lastLine = line
        }
      },
      debug ? (data) => io.stderr(data.replace(/\s*\n\s*/g, '') + '\n') : undefined,
    )
  } finally {
    if (bar && started) bar.stop()
  }
  // A stream that ended without a final status (gateway restart): ask once.
  return final ?? (await client.status(id))
}

export function registerMcp(program: Command, io: CliIo): void {
  const mcp = program
    .command('mcp')
    .summary('call pipelines as tools through the gateway (upstream asya-mcp compatible)')
    .description(
      'Lists, shows and calls the tools of an Asya gateway and follows envelopes, with the same subcommands, flags, environment and output as upstream\'s `asya-mcp`. Global flags go before the subcommand, as upstream: `asya mcp --no-stream call TOOL ...`.\n\n' +
        'Environment: ASYA_CLI_MCP_URL (gateway URL, default http://localhost:8089), ASYA_CLI_MCP_DEBUG and ASYA_CLI_MCP_NO_STREAM (1/true/yes); the names upstream\'s README documents (ASYA_CLI_URL, ASYA_CLI_DEBUG, ASYA_CLI_NO_STREAM) work too, the ASYA_CLI_MCP_* ones winning.',
    )
    .option('--url <url>', 'gateway URL [env ASYA_CLI_MCP_URL, default http://localhost:8089]')
    .addOption(new Option('--no-stream', 'return the envelope id at once instead of following it [env ASYA_CLI_MCP_NO_STREAM]'))
    .addOption(new Option('--no_stream').hideHelp())
    .option('--debug', 'print every SSE event as one-line JSON on stderr [env ASYA_CLI_MCP_DEBUG]')
    .enablePositionalOptions()
  withExamples(mcp, [
    ['export ASYA_CLI_MCP_URL=http://localhost:8089', 'after kubectl -n asya-system port-forward svc/asya-gateway 8089:8080'],
    ['asya mcp list', 'the tools'],
    ['asya mcp call echo --message=hello', 'call one, following its progress'],
    ['asya mcp --no-stream call long-task --data=x', 'global flags go before the subcommand'],
  ])
  const settings = (): { client: GatewayClient; stream: boolean; debug: boolean } => {
    const f = mcp.opts<McpFlags & { no_stream?: boolean }>()
    const url = f.url ?? io.env.ASYA_CLI_MCP_URL ?? io.env.ASYA_CLI_URL ?? 'http://localhost:8089'
    if (!/^https?:\/\//.test(url)) throw usageError(`gateway URL ${JSON.stringify(url)} must start with http:// or https:// (--url / ASYA_CLI_MCP_URL)`)
    const stream = f.stream !== false && f.no_stream !== true && !truthy(io.env.ASYA_CLI_MCP_NO_STREAM ?? io.env.ASYA_CLI_NO_STREAM)
    return { client: new GatewayClient(url), stream, debug: f.debug === true || truthy(io.env.ASYA_CLI_MCP_DEBUG ?? io.env.ASYA_CLI_DEBUG) }
  }

  const list = mcp.command('list').summary('list the tools (YAML)').description('Lists the gateway\'s tools as YAML: name, description, parameters with type and required.')
  list.action(async () => {
    const tools = await settings().client.listTools()
    if (tools.length === 0) {
      io.stderr('[!] No tools available\n')
      return
    }
    io.stdout(stringify(tools.map((t) => toolView(t, false))))
  })
  withExamples(list, [['asya mcp list', 'on ASYA_CLI_MCP_URL or http://localhost:8089'], ['asya mcp --url http://gateway:8080 list', 'another gateway']])

  const show = mcp.command('show').summary('show one tool (YAML) with descriptions, defaults and options').argument('<tool>', 'tool name')
  show.action(async (name: string) => {
    const tools = await settings().client.listTools()
    const tool = tools.find((t) => t.name === name)
    if (!tool) throw new CliError(`tool '${name}' not found; tools: ${tools.map((t) => t.name).join(', ') || 'none'} (asya mcp list)`)
    io.stdout(stringify(toolView(tool, true)))
  })
  withExamples(show, [['asya mcp show echo', 'parameters with details']])

  const call = mcp
    .command('call')
    .summary('call a tool; follows it with a progress bar, prints the final update as JSON')
    .description(
      'Calls TOOL with arguments given as one JSON object or as flags: --name=value, --name value, --flag (true). Values are typed as upstream does: true/false, integers, numbers with a dot, else strings. A dashed flag (--sleep-seconds) reaches a tool parameter spelled with underscores (sleep_seconds).\n\n' +
        'Then follows the envelope: a live progress bar on stderr when it is a terminal (percentage, current actor, state), one line per update otherwise, and prints the final update as JSON on stdout. Exits 1 when the envelope failed. With --no-stream (before `call`) prints the gateway\'s answer (envelope id, status_url) at once.',
    )
    .argument('<tool>', 'tool name')
    .argument('[arguments...]', 'JSON object, or --name=value / --name value / --flag')
    .allowUnknownOption()
    .passThroughOptions()
  call.action(async (name: string, params: string[]) => {
    const { client, stream, debug } = settings()
    const parsed = parseToolArgs(params)
    if (parsed.error) throw usageError(parsed.error)
    let args = parsed.args
    const dashed = Object.keys(args).filter((k) => k.includes('-'))
    if (dashed.length > 0) {
      const tool = (await client.listTools()).find((t) => t.name === name)
      const props = tool?.inputSchema?.properties ?? {}
      args = Object.fromEntries(Object.entries(args).map(([k, v]) => [k in props || !(k.replace(/-/g, '_') in props) ? k : k.replace(/-/g, '_'), v]))
    }
    if (debug) io.stderr(`[.] Calling tool: ${name}\n[.] Arguments: ${JSON.stringify(args)}\n`)
    const result = await client.callTool(name, args)
    if (result.isError === true) {
      const text = Array.isArray(result.content) ? (result.content as Array<{ text?: string }>).map((c) => c.text ?? '').join('\n') : JSON.stringify(result)
      throw new CliError(`tool ${name} refused the call: ${text}`)
    }
    const id = envelopeIdOf(result)
    if (!stream || id === undefined) {
      io.stdout(JSON.stringify(result, null, 2) + '\n')
      return
    }
    io.stderr(`[.] Envelope ID: ${id}\n`)
    const final = await follow(client, id, io, debug)
    io.stdout(JSON.stringify(final, null, 2) + '\n')
    if (final.status === 'failed') throw new CliError(`envelope ${id} failed: ${String((final as EnvelopeUpdate).error ?? (final as EnvelopeUpdate).message ?? 'see the JSON above')}`)
    if (!FINAL_STATUSES.has(String(final.status))) throw new CliError(`envelope ${id} is still ${String(final.status)}: the stream ended early; follow it with \`asya mcp stream ${id}\``)
  })
  withExamples(call, [
    ['asya mcp call echo \'{"message": "hello"}\'', 'JSON arguments'],
    ['asya mcp call echo --message=hello', 'flag arguments'],
    ['asya mcp call test_timeout --sleep-seconds 5', 'dashed flags reach sleep_seconds'],
    ['asya mcp --no-stream call long-task --data=x', 'print the envelope id at once'],
    ['asya mcp --debug call echo --message hi', 'every SSE event as JSON on stderr'],
  ])

  const status = mcp.command('status').summary('envelope status (JSON)').argument('<envelope-id>', 'envelope id')
  status.action(async (id: string) => {
    const s = await settings().client.status(id)
    io.stdout(JSON.stringify(s, null, 2) + '\n')
  })
  withExamples(status, [['asya mcp status 5e6fdb2d-1d6b-4e91-baef-73e825434e7b', 'current status']])

  const streamCmd = mcp.command('stream').summary('follow an envelope\'s updates; the final update as JSON on stdout').argument('<envelope-id>', 'envelope id')
  streamCmd.action(async (id: string) => {
    const { client, debug } = settings()
    io.stderr(`[.] Streaming updates for envelope ${id}\n`)
    let final: EnvelopeUpdate | undefined
    await client.stream(
      id,
      (u) => {
        if (!debug) io.stderr(updateLine(u) + '\n')
        if (FINAL_STATUSES.has(u.status)) final = u
      },
      debug ? (data) => io.stderr(data.replace(/\s*\n\s*/g, '') + '\n') : undefined,
    )
    if (final) io.stdout(JSON.stringify(final, null, 2) + '\n')
    if (final?.status === 'failed') throw new CliError(`envelope ${id} failed: ${final.error ?? final.message ?? ''}`)
  })
  withExamples(streamCmd, [['asya mcp stream 5e6fdb2d-1d6b-4e91-baef-73e825434e7b', 'history, then live until final']])

  // Upstream's `port-forward` (a kubectl port-forward it leaves running) is not carried over: its
  // users get the kubectl line that does the same instead of "unknown command" (docs/cli-design.md).
  mcp
    .command('port-forward', { hidden: true })
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => {
      throw usageError(
        'asya mcp port-forward is not part of asya: run `kubectl -n asya-system port-forward svc/asya-gateway 8089:8080 &` (the gateway\'s namespace and Service, deploy/overlays/gateway) and `export ASYA_CLI_MCP_URL=http://localhost:8089`',
      )
    })
}
