/**
 * Composed liveness probes (webhook/liveness.ts) run for real: the exact command the webhook puts
 * into the pod, executed with python3 like the kubelet would, against real HTTP, HTTPS and TCP
 * listeners, with and without the ready file. Each check can pass and can fail.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import { createServer as createHttp, type Server } from 'node:http'
import { createServer as createHttps } from 'node:https'
import { createServer as createTcp } from 'node:net'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { COMPOSED_MIN_TIMEOUT_SECONDS, decideLiveness } from '../../webhook/liveness.js'
import { certs, tmp } from './helpers.js'

type J = Record<string, unknown>
const OURS = { exec: { command: ['python3', '-S', '-c', 'ours'] } }

/** Runs the probe command like the kubelet (asynchronously: the servers under test live in this process). */
async function passes(probe: J): Promise<boolean> {
  const cmd = (probe.exec as { command: string[] }).command
  const child = spawn(cmd[0] as string, cmd.slice(1), { stdio: 'ignore', timeout: 20_000 })
  return new Promise((resolve) => child.on('exit', (code) => resolve(code === 0)))
}

async function listening(s: Server | ReturnType<typeof createTcp>): Promise<number> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  return (s.address() as AddressInfo).port
}

function composed(container: J, ready: string): J {
  const d = decideLiveness(container, ready, OURS)
  if (d.kind !== 'composed') throw new Error(`expected composed, got ${d.kind}`)
  return d.probe
}

const dir = tmp('asya-liveness-')
const ready = join(dir, 'runtime-ready')
const setReady = (on: boolean): void => (on ? writeFileSync(ready, 'ready') : rmSync(ready, { force: true }))

t.test('no user probe: ours', async (t) => {
  t.same(decideLiveness({ name: 'm' }, ready, OURS), { kind: 'ours', probe: OURS })
})

t.test('exec: the ready file and the user command must both pass', async (t) => {
  const flag = join(dir, 'healthy')
  const probe = composed({ name: 'm', livenessProbe: { exec: { command: ['cat', flag] }, periodSeconds: 20, failureThreshold: 4, initialDelaySeconds: 7 } }, ready)
  t.same([probe.periodSeconds, probe.failureThreshold, probe.initialDelaySeconds], [20, 4, 7], 'timing fields kept')
  t.equal(probe.timeoutSeconds, COMPOSED_MIN_TIMEOUT_SECONDS, 'room for the python start')
  t.notOk('httpGet' in probe || 'tcpSocket' in probe, 'one handler only')
  setReady(true)
  writeFileSync(flag, 'ok')
  t.ok(await passes(probe), 'ready + command ok → alive')
  rmSync(flag)
  t.notOk(await passes(probe), 'ready + command failing → dead (the user check still counts)')
  writeFileSync(flag, 'ok')
  setReady(false)
  t.notOk(await passes(probe), 'no ready file (the sidecar removed it after a timeout) → dead: the kubelet restarts the runtime')
})

t.test('httpGet: status, path, headers, named port; HTTPS without verification like the kubelet', async (t) => {
  const seen: Array<{ url?: string; probe?: string; ua?: string }> = []
  let status = 200
  const handler = (req: { url?: string; headers: Record<string, string | string[] | undefined> }, res: { writeHead(n: number): void; end(): void }): void => {
    seen.push({ url: req.url, probe: req.headers['x-probe'] as string | undefined, ua: req.headers['user-agent'] as string | undefined })
    res.writeHead(status)
    res.end()
  }
  const http = createHttp(handler)
  const port = await listening(http)
  t.teardown(() => http.close())
  const probe = composed({ name: 'm', ports: [{ name: 'health', containerPort: port }], livenessProbe: { httpGet: { host: '127.0.0.1', path: 'live?deep=1', port: 'health', httpHeaders: [{ name: 'X-Probe', value: 'asya' }] }, timeoutSeconds: 2 } }, ready)
  t.equal(probe.timeoutSeconds, COMPOSED_MIN_TIMEOUT_SECONDS)
  setReady(true)
  t.ok(await passes(probe), '200 → alive')
  t.same(seen.at(-1), { url: '/live?deep=1', probe: 'asya', ua: 'kube-probe/asya' }, 'path normalised, headers sent')
  status = 302
  t.ok(await passes({ ...probe }), '3xx → alive (200–399 is success; the redirect is not followed)')
  status = 503
  t.notOk(await passes(probe), '503 → dead')
  status = 200
  setReady(false)
  const before = seen.length
  t.notOk(await passes(probe), 'no ready file → dead, without even calling the user endpoint')
  t.equal(seen.length, before)
  http.close()
  setReady(true)
  t.notOk(await passes(probe), 'nothing listening → dead')

  const c = await certs()
  const https = createHttps({ cert: c.cert, key: c.key }, handler)
  const sport = await listening(https)
  t.teardown(() => https.close())
  const tls = composed({ name: 'm', livenessProbe: { httpGet: { host: '127.0.0.1', path: '/healthz', port: sport, scheme: 'HTTPS' } } }, ready)
  t.ok(await passes(tls), 'HTTPS with a certificate for another name and an untrusted CA → alive (kubelet semantics)')
})

t.test('tcpSocket: a listener is alive, none is dead; the default host is the pod address', async (t) => {
  const srv = createTcp((s) => s.end())
  const port = await listening(srv)
  t.teardown(() => srv.close())
  setReady(true)
  const probe = composed({ name: 'm', livenessProbe: { tcpSocket: { host: '127.0.0.1', port } } }, ready)
  t.ok(await passes(probe), 'listening → alive')
  setReady(false)
  t.notOk(await passes(probe), 'no ready file → dead')
  setReady(true)
  srv.close()
  t.notOk(await passes(probe), 'closed → dead')
  const implicit = composed({ name: 'm', livenessProbe: { tcpSocket: { port } } }, ready)
  t.match(String((implicit.exec as { command: string[] }).command[3]), /gethostbyname\(socket\.gethostname\(\)\)/, 'no host: the pod IP, as the kubelet dials')
})

t.test('what cannot be composed is kept as written and says why; a probe already checking the ready file is kept', async (t) => {
  const grpc = { grpc: { port: 9090 }, periodSeconds: 10 }
  const g = decideLiveness({ name: 'm', livenessProbe: grpc }, ready, OURS)
  t.equal(g.kind, 'recovery_off')
  t.same(g.probe, grpc, 'kept unchanged')
  if (g.kind === 'recovery_off') t.match(g.why, /grpc/)
  const named = decideLiveness({ name: 'm', livenessProbe: { httpGet: { port: 'web' } } }, ready, OURS)
  t.equal(named.kind, 'recovery_off')
  if (named.kind === 'recovery_off') t.match(named.why, /"web" is not a port of the container/)
  t.equal(decideLiveness({ name: 'm', livenessProbe: { periodSeconds: 3 } }, ready, OURS).kind, 'recovery_off', 'no handler at all')
  t.equal(decideLiveness({ name: 'm', livenessProbe: { exec: { command: [] } } }, ready, OURS).kind, 'recovery_off', 'empty command')
  const theirs = { exec: { command: ['sh', '-c', `test -f ${ready} && true`] } }
  t.same(decideLiveness({ name: 'm', livenessProbe: theirs }, ready, OURS), { kind: 'kept', probe: theirs })
})
