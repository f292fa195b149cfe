/**
 * `asya mcp` against the real gateway (in-process, memory transport and store), with the
 * sidecars' reports sent to the gateway's own HTTP API as sidecars send them; `call` checked in a
 * real pseudo-terminal (progress bar drawn and finished) and piped (plain lines).
 */
import { spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parse as parseYaml } from 'yaml'
import { parseToolArgs, typedValue } from '../../src/cli/mcp-client.js'
import type { Delivery } from '../../src/transport/transport.js'
import { mcpPlugin } from '../../gateway/mcp/plugin.js'
import { DEFAULT_TOOLS, post, startGateway } from '../gateway/support.js'
import { asya } from './helpers.js'

const here = dirname(fileURLToPath(import.meta.url))
const TOOLS = `${DEFAULT_TOOLS}
  - name: test_timeout
    description: sleeps
    parameters:
      sleep_seconds: { type: number, required: true }
    route: [gw-a]
`
const ACTORS = ['gw-a', 'gw-b', 'gw-c']

t.test('argument typing as upstream; JSON or flags', async (t) => {
  t.same([typedValue('true'), typedValue('False'), typedValue('42'), typedValue('-3'), typedValue('2.5'), typedValue('v1.2.3'), typedValue('1e5'), typedValue('hello')], [true, false, 42, -3, 2.5, 'v1.2.3', '1e5', 'hello'])
  t.same(parseToolArgs(['--a=1', '--b', 'x y', '--flag', '--c=true']).args, { a: 1, b: 'x y', flag: true, c: true })
  t.same(parseToolArgs(['{"text": "hi", "n": [1]}']).args, { text: 'hi', n: [1] })
  t.match(parseToolArgs(['{bad']).error, /invalid JSON arguments/)
  t.match(parseToolArgs(['[1]']).error, /must be an object/)
})

t.test('asya mcp against the gateway', async (t) => {
  const gw = await startGateway(t, { tools: TOOLS, plugins: [mcpPlugin()] })
  const published: Delivery[] = []
  const waiters: Array<(d: Delivery) => void> = []
  for (const a of ACTORS) await gw.transport.ensureQueue(a)
  await gw.transport.consume(
    'gw-a',
    async (d) => {
      await d.ack()
      const w = waiters.shift()
      if (w) w(d)
      else published.push(d)
    },
    { prefetch: 100 },
  )
  const nextEnvelope = (): Promise<Record<string, any>> =>
    new Promise((resolve) => {
      const d = published.shift()
      if (d) resolve(JSON.parse(d.body.toString()))
      else waiters.push((x) => resolve(JSON.parse(x.body.toString())))
    })
  /** What the sidecars and happy-end/error-end report for one envelope. */
  const drive = async (id: string, outcome: 'succeeded' | 'failed', pauseMs = 0): Promise<void> => {
    for (let i = 0; i < ACTORS.length; i++) {
      for (const status of ['received', 'processing', 'completed']) {
        await post(`${gw.url}/envelopes/${id}/progress`, { id, actors: ACTORS, current_actor_idx: i, status, message: `${status} by ${ACTORS[i]}` })
        if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs))
      }
      if (outcome === 'failed' && i === 1) {
        await post(`${gw.url}/envelopes/${id}/final`, { id, status: 'failed', error: 'processing_error: gw-b exploded', actors: ACTORS, current_actor_idx: 1, current_actor_name: 'gw-b' })
        return
      }
    }
    await post(`${gw.url}/envelopes/${id}/final`, { id, status: 'succeeded', result: { echoed: 'hi' } })
  }
  const env = { ASYA_CLI_MCP_URL: `${gw.url}/` } // upstream's docs end the URL with a slash

  t.test('list and show: upstream YAML', async (t) => {
    const list = await asya(['mcp', 'list'], env)
    t.equal(list.code, 0, list.stderr)
    const tools = parseYaml(list.stdout) as Array<Record<string, any>>
    t.same(tools.find((x) => x.name === 'echo'), { name: 'echo', description: 'Echo through three actors', parameters: { text: { type: 'string', required: true }, count: { type: 'integer', required: false } } })
    const show = await asya(['mcp', 'show', 'echo'], env)
    t.match(parseYaml(show.stdout), { name: 'echo', parameters: { text: { type: 'string', required: true, description: 'what to echo' }, count: { default: 1 } } })
    const missing = await asya(['mcp', 'show', 'nope'], env)
    t.equal(missing.code, 1)
    t.match(missing.stderr, /tool 'nope' not found; tools: .*echo/)
  })

  t.test('call streams plain lines when stderr is not a terminal and prints the final update; exit 0', async (t) => {
    const run = asya(['mcp', 'call', 'echo', '--text', 'hi', '--count=2'], env)
    const e = await nextEnvelope()
    t.same(e.payload, { text: 'hi', count: 2 }, 'typed flag arguments became the payload')
    await drive(e.id, 'succeeded')
    const r = await run
    t.equal(r.code, 0, r.stderr)
    t.match(r.stderr, new RegExp(`\\[\\.\\] Envelope ID: ${e.id}`))
    t.match(r.stderr, /\[\.\] \d+% running gw-a received/)
    t.match(r.stderr, /\[\+\] 100% succeeded/)
    t.notMatch(r.stderr, /unknown:/)
    const final = JSON.parse(r.stdout) as Record<string, unknown>
    t.match(final, { id: e.id, status: 'succeeded', result: { echoed: 'hi' } })

    const status = await asya(['mcp', 'status', e.id], env)
    t.match(JSON.parse(status.stdout), { id: e.id, status: 'succeeded' })
    const stream = await asya(['mcp', 'stream', e.id], env)
    t.equal(stream.code, 0)
    t.match(stream.stderr, /\[\.\] Streaming updates for envelope/)
    t.match(stream.stderr, /\[\.\] \d+% running gw-a received: received by gw-a/, 'each update printed, not `unknown:`')
    t.notMatch(stream.stderr, /unknown/)
    t.match(JSON.parse(stream.stdout), { status: 'succeeded' }, 'stream of a final envelope closes')
  })

  t.test('a failed envelope: exit 1, final update on stdout', async (t) => {
    const run = asya(['mcp', 'call', 'echo', '{"text": "boom"}'], env)
    const e = await nextEnvelope()
    await drive(e.id, 'failed')
    const r = await run
    t.equal(r.code, 1)
    t.match(JSON.parse(r.stdout), { status: 'failed', error: /gw-b exploded/ })
    t.match(r.stderr, /\[-\] failed: .*gw-b exploded/)
    t.match(r.stderr, /error: envelope .* failed/)
  })

  t.test('--no-stream, --debug, dashed flags, env names', async (t) => {
    const ns = await asya(['mcp', '--no-stream', 'call', 'test_timeout', '--sleep-seconds', '5'], env)
    t.equal(ns.code, 0, ns.stderr)
    const text = JSON.parse(JSON.parse(ns.stdout).content[0].text) as { envelope_id: string; status_url: string }
    t.ok(text.envelope_id)
    const e = await nextEnvelope()
    t.same(e.payload, { sleep_seconds: 5 }, 'dashed flag reached the underscore parameter')
    const viaEnv = await asya(['mcp', 'call', 'test_timeout', '--sleep_seconds=1'], { ...env, ASYA_CLI_MCP_NO_STREAM: 'true' })
    t.ok(JSON.parse(viaEnv.stdout).content, 'ASYA_CLI_MCP_NO_STREAM works')
    await nextEnvelope()
    const legacy = await asya(['mcp', '--no_stream', 'call', 'test_timeout', '--sleep_seconds=1'], env)
    t.ok(JSON.parse(legacy.stdout).content, '--no_stream spelling works')
    await nextEnvelope()

    const run = asya(['mcp', 'call', 'echo', '--text=dbg'], { ...env, ASYA_CLI_MCP_DEBUG: '1' })
    const d = await nextEnvelope()
    await drive(d.id, 'succeeded')
    const r = await run
    t.equal(r.code, 0)
    t.match(r.stderr, /\[\.\] Arguments: \{"text":"dbg"\}/)
    t.match(r.stderr, /^\{"id":".*","status":"running".*\}$/m, 'SSE events as one-line JSON')
  })

  t.test('errors name the fix', async (t) => {
    const down = await asya(['mcp', '--url', 'http://127.0.0.1:1', 'list'], {})
    t.equal(down.code, 1)
    t.match(down.stderr, /gateway unreachable at http:\/\/127\.0\.0\.1:1: .*pass --url \/ set ASYA_CLI_MCP_URL/)
    const badUrl = await asya(['mcp', '--url', 'localhost:8089', 'list'], {})
    t.equal(badUrl.code, 2)
    const missing = await asya(['mcp', 'status', 'no-such-envelope'], env)
    t.equal(missing.code, 1)
    t.match(missing.stderr, /answered 404 .*no such envelope/)
    const refused = await asya(['mcp', 'call', 'echo', '--count=1'], env)
    t.equal(refused.code, 1)
    t.match(refused.stderr, /text/, 'a missing required parameter is named')
    const usage = await asya(['mcp', 'call', 'echo', '{bad'], env)
    t.equal(usage.code, 2)
  })

  const spawnCli = (args: string[], viaPty: boolean): Promise<{ code: number | null; out: string; err: string }> =>
    new Promise((resolve) => {
      const cmd = viaPty ? ['python3', join(here, 'pty-run.py'), process.execPath, 'src/cli/bin.mjs', ...args] : [process.execPath, 'src/cli/bin.mjs', ...args]
      const child = spawn(cmd[0] as string, cmd.slice(1), { env: { ...process.env, ...env, FORCE_COLOR: '0' }, stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      let err = ''
      child.stdout.on('data', (b: Buffer) => (out += b))
      child.stderr.on('data', (b: Buffer) => (err += b))
      child.on('close', (code) => resolve({ code, out, err }))
    })

  t.test('in a real terminal: the progress bar is drawn, moves and finishes at 100%', async (t) => {
    const run = spawnCli(['mcp', 'call', 'echo', '--text', 'tty'], true)
    const e = await nextEnvelope()
    await drive(e.id, 'succeeded', 120)
    const r = await run
    t.equal(r.code, 0, r.out)
    t.match(r.out, /Processing: +\d+% \|[█░]+\| gw-[abc] \| (received|processing|completed)/, 'bar with percentage, actor and state')
    const percents = [...r.out.matchAll(/Processing: +(\d+)% \|/g)].map((m) => Number(m[1]))
    t.ok(percents.length >= 3 && percents.some((p) => p > 0 && p < 100), `the bar moved: ${percents.join(',')}`)
    t.match(r.out, /Processing: 100% \|█{30}\|/, 'finished full')
    t.ok(r.out.includes('\r') || r.out.includes('\x1b['), 'redrawn in place')
    t.match(r.out, /"status": "succeeded"/, 'final update printed')
  })

  t.test('piped: plain lines, no bar, JSON alone on stdout', async (t) => {
    const run = spawnCli(['mcp', 'call', 'echo', '--text', 'pipe'], false)
    const e = await nextEnvelope()
    await drive(e.id, 'succeeded')
    const r = await run
    t.equal(r.code, 0, r.err)
    t.notMatch(r.err, /Processing:|\x1b\[/)
    t.match(r.err, /\[\+\] 100% succeeded/)
    t.match(JSON.parse(r.out), { status: 'succeeded', result: { echoed: 'hi' } }, 'stdout is exactly the JSON')
  })
})
