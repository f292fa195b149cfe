/** `asya dev`: real Python runtimes and in-process sidecars on the memory transport, as a user runs it. */
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { findHandler } from '../../src/cli/dev-handlers.js'
import { asya } from './helpers.js'

const dir = mkdtempSync(join(tmpdir(), 'asya-dev-test-'))
const handlers = join(dir, 'handlers.py')
writeFileSync(
  handlers,
  `
def clean_text(payload):
    return {"text": payload["text"].strip().lower()}


class Counter:
    def __init__(self, unit="words"):
        self.unit = unit

    def count(self, payload):
        return {**payload, self.unit: len(payload["text"].split())}


def route_by_size(envelope):
    route = envelope["route"]
    here = route["current"]
    if envelope["payload"]["words"] > 2:
        route["actors"] = route["actors"][: here + 1] + ["shout"]
    route["current"] = here + 1
    return envelope


def shout(payload):
    return {**payload, "text": payload["text"].upper()}


def explode(payload):
    raise RuntimeError("handler exploded\\nsecond line")
`,
)

function run(args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['src/cli/bin.mjs', ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d))
    child.stderr.on('data', (d: Buffer) => (stderr += d))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(input ?? '')
  })
}

t.test('finds functions and Class.method by actor name, dashes as underscores', async (t) => {
  const src = 'def clean_text(p):\n  pass\nclass Counter:\n    def count(self, p):\n        pass\nasync def fetch(p):\n  pass\n'
  t.equal(findHandler(src, 'h', 'clean-text'), 'h.clean_text')
  t.equal(findHandler(src, 'h', 'count'), 'h.Counter.count')
  t.equal(findHandler(src, 'h', 'fetch'), 'h.fetch')
  t.equal(findHandler(src, 'h', 'missing'), undefined)
})

t.test('a route with a method, an envelope-mode router and a run-time actor: hops on stderr, finals on stdout, exit 0', async (t) => {
  const r = await run(['dev', handlers, '--route', 'clean-text,count,route-by-size', '--mode', 'route-by-size=envelope', '--actor', 'shout=shout', '--file', '-'], '{"text": "  Hello Big World "}\n{"text": "Hi"}\n')
  t.equal(r.code, 0, r.stderr)
  const finals = JSON.parse(r.stdout) as Array<{ end: string; envelope: { id: string; payload: Record<string, unknown>; route: { actors: string[] } } }>
  t.equal(finals.length, 2)
  t.ok(finals.every((f) => f.end === 'happy-end'))
  const big = finals.find((f) => f.envelope.payload.words === 3)
  t.same(big?.envelope.payload, { text: 'HELLO BIG WORLD', words: 3 }, 'the router added shout at run time')
  t.same(big?.envelope.route.actors, ['clean-text', 'count', 'route-by-size', 'shout'])
  t.same(finals.find((f) => f.envelope.payload.words === 1)?.envelope.payload, { text: 'hi', words: 1 })
  t.match(r.stderr, /actor count\s+handlers\.Counter\.count \(payload mode\)/)
  t.match(r.stderr, /clean-text\s+→ count\s+dev-/)
  t.match(r.stderr, /shout\s+→ happy-end\s+dev-/)
})

t.test('an envelope that ends in error-end: printed with the error, exit 1; --actor maps module.Class.method', async (t) => {
  const r = await run(['dev', handlers, '--route', 'tally,explode', '--actor', 'tally=handlers.Counter.count', '--payload', '{"text": "x y"}'])
  t.equal(r.code, 1)
  const finals = JSON.parse(r.stdout) as Array<{ end: string; envelope: { payload: { error: string; details: { message: string; actor: string } } } }>
  t.equal(finals.length, 1)
  t.equal(finals[0]?.end, 'error-end')
  t.match(finals[0]?.envelope.payload, { error: 'processing_error', details: { message: /handler exploded/, actor: 'explode' } })
  t.match(r.stderr, /actor tally\s+handlers\.Counter\.count \(payload mode\)/, 'an actor with no function of its name, mapped to a method')
  t.match(r.stderr, /tally\s+→ explode\s+dev-/)
  t.match(r.stderr, /explode\s+→ error-end/)
  t.match(r.stderr, /error: 1 envelope\(s\) failed/)
})

t.test('usage errors name the fix (exit 2)', async (t) => {
  const noHandler = await asya(['dev', handlers, '--route', 'clean-text,nope', '--payload', '{}'], {})
  t.equal(noHandler.code, 2)
  t.match(noHandler.stderr, /no handler for actor "nope" in .*handlers\.py: define `def nope\(payload\)`.*--actor nope=handlers\.function/)
  const badJson = await asya(['dev', handlers, '--route', 'clean-text', '--payload', '{text}'], {})
  t.equal(badJson.code, 2)
  t.match(badJson.stderr, /--payload "\{text\}" is not JSON/)
  t.equal((await asya(['dev', handlers, '--route', 'clean-text'], {})).code, 2, 'nothing to send')
  t.equal((await asya(['dev', join(dir, 'missing.py'), '--route', 'a', '--payload', '1'], {})).code, 2)
  t.equal((await asya(['dev', handlers, '--route', 'clean-text', '--payload', '1', '--mode', 'clean-text=batch'], {})).code, 2)
  t.equal((await asya(['dev', handlers, '--payload', '1'], {})).code, 2, '--route is required')
})
