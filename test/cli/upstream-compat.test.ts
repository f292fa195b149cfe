/**
 * Upstream `asya mcp` compatibility: the command lines upstream's docs show (its README of the CLI,
 * the script's own usage text, the quickstarts and the CLI reference), run unchanged by a real shell
 * against the real gateway, whose tools run through a real local pipeline (DevPipeline: Python
 * runtimes, sidecars reporting progress, end-actor sidecars posting the finals). Only what cannot
 * be the same on this machine is replaced: the gateway's address and the envelope ids.
 */
import { spawn } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test as Tap } from 'tap'
import { parse as parseYaml } from 'yaml'
import { resolveActors } from '../../src/cli/dev-handlers.js'
import { DevPipeline } from '../../src/cli/dev-pipeline.js'
import { mcpPlugin } from '../../gateway/mcp/plugin.js'
import { startGateway } from '../gateway/support.js'
import { asya } from './helpers.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const dir = mkdtempSync(join(tmpdir(), 'asya-upstream-cli-'))
writeFileSync(
  join(dir, 'compat.py'),
  `
def echo(payload):
    return payload


def text_processor(payload):
    text = payload["text"]
    return {"text": text, "processed": text.upper(), "length": len(text)}


def hello(payload):
    return {**payload, "greeting": "Hello, %s!" % (payload.get("name") or payload.get("who"))}
`,
)
// The tools upstream's examples call, each through a real actor.
const TOOLS = `
defaults: { progress: true, timeout: 60 }
tools:
  - { name: echo, description: Echo a message, parameters: { message: { type: string } }, route: [echo] }
  - { name: my_tool, description: No arguments, route: [echo] }
  - name: text-processor
    description: Process text with LLM
    parameters: { text: { type: string, required: true } }
    route: [text-processor]
  - { name: hello, description: Greets users by name, parameters: { name: { type: string }, who: { type: string } }, route: [hello] }
  - { name: process, parameters: { count: { type: integer }, enabled: { type: boolean } }, route: [echo] }
  - { name: test_timeout, parameters: { sleep_seconds: { type: number, required: true } }, route: [echo] }
  - { name: test_progress, parameters: { value: { type: integer } }, route: [echo] }
  - { name: long-running-task, parameters: { input: { type: string } }, route: [echo] }
  - { name: long-task, parameters: { data: { type: string } }, route: [echo] }
  - { name: process-data, parameters: { input: { type: string } }, route: [echo] }
  - name: process-image
    parameters: { url: { type: string, required: true }, filters: { type: array, items: { type: string } } }
    route: [echo]
`

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Runs a documented command line: bash parses it (quotes, `=` values, JSON in single quotes) into
 * the argv the installed `asya` would get, and the CLI runs on that argv in-process (runCli, what
 * bin.mjs calls; a process per line would cost seconds each on a busy machine).
 */
async function sh(line: string, env: NodeJS.ProcessEnv): Promise<Run> {
  const parsed = await shell(`asya() { printf '%s\\0' "$@"; }; ${line}`, {})
  if (parsed.code !== 0) throw new Error(`bash could not run ${line}: ${parsed.stderr}`)
  return asya(parsed.stdout.split('\0').slice(0, -1), env)
}

// `asya` on PATH, as an installed CLI is: for the line whose shell use is the point.
const bin = mkdtempSync(join(tmpdir(), 'asya-bin-'))
writeFileSync(join(bin, 'asya'), `#!/bin/sh\nexec "${process.execPath}" "${join(root, 'src/cli/bin.mjs')}" "$@"\n`)
chmodSync(join(bin, 'asya'), 0o755)
t.teardown(() => {
  for (const d of [dir, bin]) rmSync(d, { recursive: true, force: true })
})

function shell(line: string, env: Record<string, string>): Promise<Run> {
  return new Promise((done) => {
    const child = spawn('bash', ['-c', line], { env: { PATH: `${bin}:${process.env.PATH ?? ''}`, HOME: process.env.HOME ?? '/tmp', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d))
    child.stderr.on('data', (d: Buffer) => (stderr += d))
    child.on('close', (code) => done({ code, stdout, stderr }))
  })
}

t.test('upstream docs command lines', async (t) => {
  const pipeline = new DevPipeline({ ...resolveActors(join(dir, 'compat.py'), ['echo', 'text-processor', 'hello'], {}, {}), name: 'asya-compat', logLevel: 'error' })
  const gw = await startGateway(t, { tools: TOOLS, transport: await pipeline.transport('gateway'), plugins: [mcpPlugin()] })
  t.teardown(() => pipeline.stop())
  await pipeline.start({ gatewayUrl: gw.url })
  // Upstream's docs end the URL with a slash (export ASYA_CLI_MCP_URL=http://localhost:8080/).
  const env = { ASYA_CLI_MCP_URL: `${gw.url}/` }
  /** A documented `call` that follows the envelope: `[.] Envelope ID:` on stderr, the final update as JSON on stdout. */
  const call = async (t: Tap, line: string, result: unknown, e: Record<string, string> = env): Promise<string> => {
    const r = await sh(line, e)
    t.equal(r.code, 0, `${line}: exit 0 (${r.stderr.trim().split('\n').pop() ?? ''})`)
    const id = /\[\.\] Envelope ID: (\S+)/.exec(r.stderr)?.[1] ?? ''
    t.ok(id, `${line}: envelope id on stderr`)
    t.match(JSON.parse(r.stdout || '{}'), { id, status: 'succeeded', result }, `${line}: the final update on stdout`)
    return id
  }

  t.test('list and show (YAML, upstream\'s shape)', async (t) => {
    const list = await sh('asya mcp list', env)
    t.equal(list.code, 0, list.stderr)
    t.ok(list.stdout.includes('- name: text-processor\n  description: Process text with LLM\n  parameters:\n    text:\n      type: string\n      required: true\n'), 'the block upstream\'s CLI reference shows')
    t.equal((parseYaml(list.stdout) as unknown[]).length, 11)
    for (const line of [`asya mcp --url ${gw.url} list`, `asya mcp --url ${gw.url}/ list`]) t.same((await sh(line, {})).stdout, list.stdout, line)
    const show = await sh('asya mcp show echo', env)
    t.same(parseYaml(show.stdout), { name: 'echo', description: 'Echo a message', parameters: { message: { type: 'string', required: false } } })
  })

  t.test('call, with JSON or flag arguments', async (t) => {
    await call(t, 'asya mcp call my_tool', {})
    await call(t, `asya mcp call echo '{"message": "hello world"}'`, { message: 'hello world' })
    await call(t, `asya mcp call echo '{"message": "hello"}'`, { message: 'hello' })
    await call(t, `asya mcp call echo '{"message": "test"}'`, { message: 'test' })
    await call(t, 'asya mcp call echo --message="hello world"', { message: 'hello world' })
    await call(t, 'asya mcp call echo --message "hello world"', { message: 'hello world' })
    await call(t, 'asya mcp call echo --message=hello', { message: 'hello' })
    await call(t, 'asya mcp call echo --message hello', { message: 'hello' })
    await call(t, 'asya mcp call echo --message "hello from kubectl port-forward"', { message: 'hello from kubectl port-forward' })
    await call(t, 'asya mcp call process --count=10 --enabled=true', { count: 10, enabled: true })
    await call(t, 'asya mcp call test_timeout --sleep_seconds=5', { sleep_seconds: 5 })
    await call(t, 'asya mcp call test_timeout --sleep_seconds 5', { sleep_seconds: 5 })
    await call(t, 'asya mcp call process-data --input "test data"', { input: 'test data' })
    await call(t, `asya mcp call process-image '{"url": "https://example.com/img.jpg", "filters": ["resize", "blur"]}'`, { url: 'https://example.com/img.jpg', filters: ['resize', 'blur'] })
    await call(t, 'asya mcp call text-processor --text="hello world"', { text: 'hello world', processed: 'HELLO WORLD', length: 11 })
    await call(t, 'asya mcp call text-processor --text="Hello world"', { text: 'Hello world', processed: 'HELLO WORLD', length: 11 })
    await call(t, 'asya mcp call hello --name=Asya', { greeting: 'Hello, Asya!' })
    await call(t, 'asya mcp call hello --who=World', { greeting: 'Hello, World!' })
    // Upstream's quickstart still shows the old --stream flag: it reaches the tool as an argument, as upstream sends it.
    await call(t, 'asya mcp call hello --name=Asya --stream', { greeting: 'Hello, Asya!', stream: true })
  })

  t.test('global flags before the subcommand: --no-stream, --debug', async (t) => {
    for (const [line, payload] of [
      ['asya mcp --no-stream call long-task --data=x', { data: 'x' }],
      ['asya mcp --no-stream call long-running-task --input=data', { input: 'data' }],
      ['asya mcp --no-stream call my_tool', {}],
      ['asya mcp --no_stream call my_tool', {}],
    ] as const) {
      const r = await sh(line, env)
      t.equal(r.code, 0, line)
      const answer = JSON.parse(JSON.parse(r.stdout).content[0].text) as { envelope_id: string; status_url: string }
      t.ok(answer.envelope_id, `${line}: the envelope id at once`)
      t.match(answer.status_url, `/envelopes/${answer.envelope_id}`)
      t.match(JSON.parse((await sh(`asya mcp status ${answer.envelope_id}`, env)).stdout), { id: answer.envelope_id, status: /pending|running|succeeded/ })
      const streamed = await sh(`asya mcp stream ${answer.envelope_id}`, env)
      t.equal(streamed.code, 0)
      t.match(JSON.parse(streamed.stdout), { id: answer.envelope_id, status: 'succeeded', result: payload }, `${line}: followed to the end with stream`)
      t.match(streamed.stderr, /\[\+\] 100% succeeded/)
    }
    for (const line of ['asya mcp --debug call test_progress --value 10', 'asya mcp --debug call test_timeout --sleep_seconds 5', 'asya mcp --debug call my_tool']) {
      const r = await sh(line, env)
      t.equal(r.code, 0, line)
      t.match(r.stderr, /\[\.\] Calling tool: \S+\n\[\.\] Arguments: \{.*\}\n/, `${line}: what is sent`)
      t.match(r.stderr, /^\{"id":"[^"]+","status":"succeeded".*\}$/m, `${line}: SSE events as one-line JSON`)
      t.equal(JSON.parse(r.stdout).status, 'succeeded')
    }
  })

  t.test('status and stream of an envelope', async (t) => {
    const id = await call(t, 'asya mcp call echo --message=hello', { message: 'hello' })
    const status = await sh(`asya mcp status ${id}`, env)
    t.equal(status.code, 0)
    t.match(JSON.parse(status.stdout), { id, status: 'succeeded', result: { message: 'hello' } })
    const stream = await sh(`asya mcp stream ${id}`, env)
    t.equal(stream.code, 0)
    t.match(stream.stderr, new RegExp(`\\[\\.\\] Streaming updates for envelope ${id}\\n`))
    t.notMatch(stream.stderr, /unknown:/, 'each update printed (upstream printed `unknown:`)')
    t.match(stream.stderr, /\[\.\] \d+% running echo/)
  })

  t.test('the environment names upstream documents', async (t) => {
    t.equal((await sh('asya mcp list', { ASYA_CLI_URL: gw.url })).code, 0, 'ASYA_CLI_URL')
    await call(t, 'asya mcp call my_tool', {}, { ASYA_CLI_URL: gw.url })
    const ns = await sh('asya mcp call my_tool', { ...env, ASYA_CLI_NO_STREAM: 'true' })
    t.ok(JSON.parse(JSON.parse(ns.stdout).content[0].text).envelope_id, 'ASYA_CLI_NO_STREAM=true: the envelope id at once')
    const dbg = await sh('asya mcp call my_tool', { ...env, ASYA_CLI_DEBUG: 'true' })
    t.match(dbg.stderr, /\[\.\] Arguments: \{\}/, 'ASYA_CLI_DEBUG=true')
    const both = await sh('asya mcp list', { ASYA_CLI_MCP_URL: gw.url, ASYA_CLI_URL: 'http://127.0.0.1:1' })
    t.equal(both.code, 0, 'ASYA_CLI_MCP_URL wins over ASYA_CLI_URL')
  })

  t.test('port-forward is not carried over: the error gives the kubectl line', async (t) => {
    const r = await shell('export ASYA_CLI_MCP_URL=$(asya mcp port-forward --namespace my-namespace) && asya mcp list', env)
    t.not(r.code, 0)
    t.match(r.stderr, /error: asya mcp port-forward is not part of asya: run `kubectl -n asya-system port-forward svc\/asya-gateway 8089:8080 &`/)
  })

  t.test('every call ended in the pipeline\'s happy-end actor, which reported it to the gateway', async (t) => {
    const deadline = Date.now() + 10_000
    while (pipeline.finals.length < 30 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
    t.equal(pipeline.finals.length, 30, '30 tool calls')
    t.ok(pipeline.finals.every((f) => f.end === 'happy-end'), 'none failed')
  })
})
