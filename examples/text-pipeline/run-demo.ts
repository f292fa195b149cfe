/**
 * `npm run demo`: a real Asya pipeline on one machine, no broker, no cluster, called the way an
 * application or an AI agent calls it: as an MCP tool through the gateway. Each actor is a real
 * `asya_runtime.py` process running a handler from pipeline.py, beside an in-process sidecar that
 * reports progress to the gateway; happy-end and error-end are runtime-less end-actor sidecars that
 * post the final status: the local pipeline of `asya dev` (DevPipeline, src/cli/dev-pipeline.ts)
 * started with the gateway's URL and sharing its broker with the gateway. Everything talks over the in-memory transport (or RabbitMQ with
 * ASYA_TRANSPORT=rabbitmq); the gateway keeps envelopes in its in-memory store. The official MCP
 * SDK client calls the `analyze_text` tool (routes.yaml) for a few texts, prints every hop and the
 * progress as it streams, prints each final result, and exits 0 when they are what they should be.
 */
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import { readGatewayConfig } from '../../gateway/config.js'
import { Gateway } from '../../gateway/gateway.js'
import { mcpPlugin } from '../../gateway/mcp/plugin.js'
import { loadToolConfig } from '../../gateway/tool-config.js'
import { DevPipeline, type DevActor } from '../../src/cli/dev-pipeline.js'
import { createLogger } from '../../src/logger.js'
import type { SidecarEvent } from '../../sidecar/message-processor.js'

const here = dirname(fileURLToPath(import.meta.url))
const ACTORS: Array<DevActor & { mode: 'payload' | 'envelope' }> = [
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
  // The actors and end actors: the same local pipeline `asya dev` runs, reporting to the gateway.
  const pipeline = new DevPipeline({
    actors: ACTORS,
    moduleDir: here,
    name: 'asya-demo',
    logger,
    logLevel,
    env: { ASYA_TRANSPORT: transportName },
    onEvent: (e) => {
      const line = describe(e)
      if (line) console.log(color(2, line))
    },
  })

  console.log(`Asya demo: a gateway, ${ACTORS.length} Python actors and the end actors on the ${transportName} transport\n`)
  // The gateway on the embedded defaults: in-memory envelope store (no ASYA_DATABASE_URL), the demo's tools.
  const gatewayConfig = readGatewayConfig({ ASYA_GATEWAY_HOST: '127.0.0.1', ASYA_GATEWAY_PORT: env.ASYA_GATEWAY_PORT ?? '0', ASYA_LOG_LEVEL: logLevel, ASYA_TRANSPORT: transportName })
  const gateway = await Gateway.create({
    config: gatewayConfig,
    logger: logger.child({ component: 'asya-gateway' }),
    transport: await pipeline.transport('gateway'),
    tools: loadToolConfig(join(here, 'routes.yaml')),
    plugins: [mcpPlugin()],
  })
  const client = new Client({ name: 'asya-demo', version: '1.0.0' })
  try {
    const addr = await gateway.start()
    const gatewayUrl = `http://127.0.0.1:${addr.port}`
    console.log(`${color(32, 'started')} gateway   ${gatewayUrl} (MCP at /mcp, in-memory store)`)
    await pipeline.start({ gatewayUrl })
    for (const a of ACTORS) console.log(`${color(32, 'started')} ${a.name.padEnd(9)} handler=${a.handler} (${a.mode} mode)`)
    for (const end of [pipeline.happyEnd, pipeline.errorEnd]) console.log(`${color(32, 'started')} ${end.padEnd(9)} end actor: posts the final status to the gateway`)

    await client.connect(new StreamableHTTPClientTransport(new URL(`${gatewayUrl}/mcp`)))
    const { tools } = await client.listTools()
    console.log(`\nMCP client connected; tools: ${tools.map((x) => `${x.name}(${Object.keys((x.inputSchema.properties ?? {}) as object).join(', ')})`).join(', ')}`)

    const timeout = setTimeout(() => {
      console.error('demo: the tool calls did not finish within 90 s')
      process.exit(1)
    }, 90_000)
    const outcomes: Array<{ id: string; ok: boolean; text: string }> = []
    for (const input of INPUTS) {
      console.log(`\n${color(36, 'tools/call')} analyze_text ${input.id}: ${JSON.stringify(input.text)}`)
      const res = (await client.callTool({ name: 'analyze_text', arguments: { text: input.text } }, undefined, {
        onprogress: (p) => console.log(`  ${color(33, `${String(Math.round(p.progress)).padStart(3)}%`)} ${p.message ?? ''}`),
        resetTimeoutOnProgress: true,
      })) as CallToolResult
      const text = (res.content[0] as { text?: string } | undefined)?.text ?? ''
      const mark = res.isError ? color(31, 'failed') : color(32, 'result')
      console.log(`  ${mark}  ${text}`)
      outcomes.push({ id: input.id, ok: res.isError !== true, text })
    }
    clearTimeout(timeout)

    // doc-1 is split into sentences (the tool result is the first; the others reach happy-end too),
    // doc-2 is answered, doc-3 is empty and fails in normalize.
    const ok =
      outcomes.length === 3 &&
      outcomes[0]?.ok === true &&
      /"sentence"/.test(outcomes[0].text) &&
      outcomes[1]?.ok === true &&
      /"answer"/.test(outcomes[1].text) &&
      outcomes[2]?.ok === false &&
      /non-empty 'text'/.test(outcomes[2].text)
    console.log(`\n${ok ? color(32, 'demo ok') : color(31, 'demo: unexpected results')}: ${outcomes.filter((o) => o.ok).length} tool calls succeeded, ${outcomes.filter((o) => !o.ok).length} failed as expected`)
    process.exitCode = ok ? 0 : 1
  } finally {
    await client.close().catch(() => undefined)
    // The sidecars first (every envelope is final by now: no report is lost), and with them the
    // gateway's transport, which the pipeline made; then the gateway.
    await pipeline.stop()
    await gateway.stop()
  }
}

main().catch((err: unknown) => {
  console.error('demo failed:', err)
  process.exit(1)
})
