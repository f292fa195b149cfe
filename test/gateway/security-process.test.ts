/**
 * The real entry point (gateway/main.ts): with security off it warns at start; with security on and
 * its files missing it exits 1 with one log line naming every problem; with security on and valid
 * files it serves both listeners.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnGateway } from './support.js'
import { sha256hex, token } from './security-support.js'

t.test('security off: a warning at start', async (t) => {
  const gw = await spawnGateway(t, { ASYA_TRANSPORT: 'memory' })
  t.teardown(() => gw.stop())
  const warning = gw.logs.map((l) => { try { return JSON.parse(l) } catch { return {} } }).find((j) => /ASYA_GATEWAY_SECURITY is off/.test(j.msg ?? ''))
  t.ok(warning, 'warned')
  t.equal(warning?.level, 'warn')
})

t.test('security on with unreadable files: exit 1, every problem named', async (t) => {
  const proc = spawn(process.execPath, ['--import', './scripts/register-ts.mjs', 'gateway/main.ts'], {
    env: { ...process.env, ASYA_TRANSPORT: 'memory', ASYA_GATEWAY_PORT: '0', ASYA_GATEWAY_INTERNAL_PORT: '0', ASYA_GATEWAY_SECURITY: 'on', ASYA_GATEWAY_SIDECAR_TOKEN_FILE: '/nonexistent/a', ASYA_GATEWAY_END_ACTOR_TOKEN_FILE: '/nonexistent/b', ASYA_GATEWAY_API_KEYS_FILE: '/nonexistent/c' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()))
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()))
  const code = await new Promise<number | null>((r) => proc.once('exit', r))
  t.equal(code, 1)
  for (const v of ['ASYA_GATEWAY_SIDECAR_TOKEN_FILE', 'ASYA_GATEWAY_END_ACTOR_TOKEN_FILE', 'ASYA_GATEWAY_API_KEYS_FILE']) t.match(out, v, `names ${v}`)
})

t.test('security on: both listeners served by the real process', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'asya-gw-proc-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const key = token()
  writeFileSync(join(dir, 's'), token())
  writeFileSync(join(dir, 'e'), token())
  writeFileSync(join(dir, 'k'), `keys:\n  - { name: ci, sha256: ${sha256hex(key)} }\n`)
  const gw = await spawnGateway(t, { ASYA_TRANSPORT: 'memory', ASYA_GATEWAY_SECURITY: 'on', ASYA_GATEWAY_INTERNAL_PORT: '0', ASYA_GATEWAY_SIDECAR_TOKEN_FILE: join(dir, 's'), ASYA_GATEWAY_END_ACTOR_TOKEN_FILE: join(dir, 'e'), ASYA_GATEWAY_API_KEYS_FILE: join(dir, 'k') })
  t.teardown(() => gw.stop())
  const listening = gw.logs.map((l) => { try { return JSON.parse(l) } catch { return {} } }).find((j) => j.msg === 'gateway listening')
  t.ok(listening?.internal_port > 0, 'internal listener up')
  t.notOk(gw.logs.some((l) => /ASYA_GATEWAY_SECURITY is off/.test(l)), 'no warning')
  t.equal((await fetch(`${gw.url}/envelopes/x`)).status, 401)
  t.equal((await fetch(`${gw.url}/envelopes/x`, { headers: { authorization: `Bearer ${key}` } })).status, 404)
  t.equal((await fetch(`http://127.0.0.1:${listening.internal_port}/health`)).status, 200)
  t.equal((await fetch(`http://127.0.0.1:${listening.internal_port}/envelopes/x/progress`, { method: 'POST', body: '{}' })).status, 401)
})
