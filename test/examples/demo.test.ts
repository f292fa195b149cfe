/**
 * `npm run demo` as a user runs it on a fresh machine (embedded defaults: memory transport,
 * in-memory store, no broker, no cluster): the tool call goes through the gateway's MCP endpoint,
 * progress streams while the pipeline runs, and the final results are printed.
 */
import { spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

t.test('npm run demo: a tool call through the gateway, progress as it streams, final results, exit 0', async (t) => {
  // The script npm runs (package.json "demo"), without npm in between.
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' }
  const child = spawn(process.execPath, ['--import', './scripts/register-ts.mjs', 'examples/text-pipeline/run-demo.ts'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr.on('data', (d: Buffer) => (out += d.toString()))
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  t.equal(code, 0, 'exit 0')
  t.match(out, /started gateway\s+http:\/\/127\.0\.0\.1:\d+ \(MCP at \/mcp, in-memory store\)/, 'the gateway on the embedded defaults')
  t.match(out, /on the memory transport/, 'no broker')
  t.match(out, /tools\/call analyze_text doc-1/, 'the tool is called through the gateway')
  const percents = [...out.matchAll(/^\s+(\d+)% /gm)].map((m) => Number(m[1]))
  t.ok(percents.length >= 6, `progress streamed (${percents.length} lines)`)
  t.ok(percents.includes(100), 'up to 100 %')
  t.match(out, /received by normalize/, 'progress names the actors')
  t.match(out, /result\s+\{"sentence":"Asya routes envelopes\.","index":0,"of":3\}/, 'final result of a statement: its first sentence')
  t.match(out, /result\s+\{"question":"How does the route travel with the envelope\?","answer":"42"\}/, 'final result of a question: its answer')
  t.match(out, /failed\s+\{[^\n]*non-empty 'text'/, 'the failing input: the handler error')
  t.match(out, /demo ok: 2 tool calls succeeded, 1 failed as expected/)
})
