/**
 * `npm run system` (src/system/local.ts): the system process from a checkout, run exactly as the
 * package.json script says, webhook alone (controller off) and with the controller against a
 * kubeconfig; local certificate made once and reused.
 */
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { planLocal } from '../../src/system/local.js'
import { startKubeApiServer } from '../k8s/kube-api-server.js'
import { freePort } from '../support/free-port.js'
import { actorPod, admissionReview, post, tmp } from './helpers.js'

const root = join(import.meta.dirname, '..', '..')
const script = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.system ?? ''

t.setTimeout(600_000)
t.match(script, /^node --import \.\/scripts\/register-ts\.mjs src\/system\/local\.ts$/, 'npm run system runs src/system/local.ts')

t.test('plan: flags and local defaults, the environment always wins', async (t) => {
  const home = tmp('asya-home-')
  const p = planLocal({ argv: ['--webhook-only', '--dir', '/x/state'], env: { HOME: home } })
  t.equal(p.env.ASYA_CONTROLLER_ENABLED, 'false', '--webhook-only turns the controller off')
  t.equal(p.env.ASYA_WEBHOOK_ADDR, '127.0.0.1:8443')
  t.equal(p.env.ASYA_METRICS_ADDR, '127.0.0.1:8081')
  t.equal(p.env.ASYA_TLS_CERT_FILE, '/x/state/webhook-certs/tls.crt')
  t.equal(p.caFile, '/x/state/webhook-certs/ca.crt')
  t.same(p.makeCert, { dir: '/x/state/webhook-certs', namespace: 'asya-system', service: 'asya-webhook' })
  t.ok(p.notes.some((n) => n.startsWith('ASYA_TLS_CERT_FILE=')), 'filled values are reported')
  const own = planLocal({ argv: ['--webhook-only'], env: { HOME: home, ASYA_WEBHOOK_ADDR: '0.0.0.0:9443', ASYA_TLS_CERT_FILE: '/c', ASYA_TLS_KEY_FILE: '/k' } })
  t.equal(own.env.ASYA_WEBHOOK_ADDR, '0.0.0.0:9443')
  t.equal(own.env.ASYA_TLS_CERT_FILE, '/c')
  t.equal(own.makeCert, undefined, 'no certificate made when the user names one')
  const kc = join(home, 'kubeconfig')
  writeFileSync(kc, '')
  const co = planLocal({ argv: ['--controller-only'], env: { HOME: home, KUBECONFIG: `${join(home, 'missing')}:${kc}` } })
  t.equal(co.env.ASYA_WEBHOOK_ENABLED, 'false', '--controller-only turns the webhook off')
  t.equal(co.env.ASYA_TLS_CERT_FILE, undefined, 'no certificate without a webhook')
  t.throws(() => planLocal({ argv: [], env: { HOME: home } }), { code: 'ASYA_ERR_CONFIG_MISSING', message: /--webhook-only/ }, 'no kubeconfig: the start fails naming the way out')
  t.throws(() => planLocal({ argv: ['--verbose'], env: { HOME: home } }), { code: 'ASYA_ERR_CONFIG_INVALID', message: /--verbose/ })
  t.throws(() => planLocal({ argv: ['--webhook-only', '--controller-only'], env: { HOME: home } }), { code: 'ASYA_ERR_CONFIG_INVALID' })
  t.throws(() => planLocal({ argv: ['--webhook-only', '--dir'], env: { HOME: home } }), { code: 'ASYA_ERR_CONFIG_INVALID', message: /--dir/ })
})

interface Run {
  child: ChildProcess
  stderr: () => string
  exited: Promise<number | null>
}

function run(args: string[], env: NodeJS.ProcessEnv): Run {
  // The package.json script, word for word: what the docs tell people to type.
  const [, ...rest] = script.split(' ')
  const child = spawn(process.execPath, [...rest, ...args], { cwd: root, env: { PATH: process.env.PATH, ASYA_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()))
  child.stdout?.resume()
  return { child, stderr: () => err, exited: new Promise((r) => child.on('exit', (code) => r(code))) }
}

async function until(what: string, f: () => Promise<boolean>, r: Run, ms = 120_000): Promise<void> {
  const end = Date.now() + ms
  for (;;) {
    if (r.child.exitCode !== null) throw new Error(`${what}: process exited ${r.child.exitCode}: ${r.stderr()}`)
    if (await f().catch(() => false)) return
    if (Date.now() > end) throw new Error(`${what}: timed out: ${r.stderr()}`)
    await new Promise((res) => setTimeout(res, 100))
  }
}

t.test('npm run system -- --webhook-only: serves admission with its own certificate, no cluster, exits 0 on Ctrl-C', async (t) => {
  const dir = tmp('asya-local-')
  const home = tmp('asya-home-')
  const [wh, metrics] = [await freePort(), await freePort()]
  const env = { HOME: home, ASYA_WEBHOOK_ADDR: `127.0.0.1:${wh}`, ASYA_METRICS_ADDR: `127.0.0.1:${metrics}` }
  const r = run(['--webhook-only', '--dir', dir], env)
  t.teardown(() => void r.child.kill('SIGKILL'))
  await until('ready', async () => (await fetch(`http://127.0.0.1:${metrics}/readyz`)).ok, r)
  const ca = readFileSync(join(dir, 'webhook-certs', 'ca.crt'), 'utf8')
  const reply = await post(`https://127.0.0.1:${wh}`, JSON.stringify(admissionReview(actorPod())), { ca })
  t.equal(reply.status, 200)
  const response = (reply.json() as { response: { allowed: boolean; patch?: string } }).response
  t.equal(response.allowed, true)
  t.match(Buffer.from(response.patch ?? '', 'base64').toString(), /asya-sidecar/, 'the sidecar is injected')
  t.match(r.stderr(), /controller: off/, 'says the controller is off')
  t.match(r.stderr(), new RegExp(`curl --cacert ${join(dir, 'webhook-certs', 'ca.crt')}`), 'shows how to reach it')
  r.child.kill('SIGINT')
  t.equal(await r.exited, 0, 'Ctrl-C: exit 0')
  const next = planLocal({ argv: ['--webhook-only', '--dir', dir], env })
  t.equal(next.makeCert, undefined, 'the next start reuses the certificate (the CA stays trusted)')
  t.equal(next.env.ASYA_TLS_CERT_FILE, join(dir, 'webhook-certs', 'tls.crt'))
})

t.test('npm run system: without a kubeconfig the start fails at once naming --webhook-only', async (t) => {
  const r = run(['--dir', tmp('asya-local-')], { HOME: tmp('asya-home-') })
  t.equal(await r.exited, 1)
  t.match(r.stderr(), /ASYA_ERR_CONFIG_MISSING.*--webhook-only/)
})

t.test('npm run system -- --controller-only: the controller leads against the kubeconfig it is given', async (t) => {
  const kube = await startKubeApiServer({ autoCreateNamespaces: true })
  t.teardown(() => kube.close())
  const home = tmp('asya-home-')
  const kubeconfig = join(home, 'kubeconfig')
  writeFileSync(kubeconfig, kube.kubeConfig.exportConfig())
  const metrics = await freePort()
  const r = run(['--controller-only'], {
    HOME: home,
    KUBECONFIG: kubeconfig,
    ASYA_METRICS_ADDR: `127.0.0.1:${metrics}`,
    ASYA_LEASE_DURATION: '2s',
    ASYA_LEASE_RENEW_DEADLINE: '1s',
    ASYA_LEASE_RETRY_PERIOD: '200ms',
  })
  t.teardown(() => void r.child.kill('SIGKILL'))
  await until('leading', async () => ((await (await fetch(`http://127.0.0.1:${metrics}/readyz`)).json()) as { leader: boolean }).leader, r)
  t.ok(kube.get('leases', 'asya-system', 'asya-controller', 'coordination.k8s.io'), 'leader election stays on: the Lease is held')
  r.child.kill('SIGTERM')
  t.equal(await r.exited, 0)
})
