/**
 * The injected pod works: this test plays the kubelet for a pod the webhook mutated. It starts
 * the runtime container's command and the sidecar with exactly the env the patch wrote (volume
 * paths mapped to a temp dir, secretKeyRefs resolved from a fake Secret store), runs the injected
 * exec probes, and sends an envelope through the real RabbitMQ broker.
 */
import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { rmSync, unlinkSync } from 'node:fs'
import { injectPod } from '../../webhook/inject.js'
import { Inbox } from '../transport/conformance.js'
import { rabbitTransport, testExchange } from '../support/rabbitmq.js'
import { SIDECAR_HANDLERS_DIR, envelope, json, rand } from '../support/actor-harness.js'
import { testConfig } from './fixtures.js'
import { tmp, waitFor } from './helpers.js'
import { freePort } from '../support/free-port.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

interface EnvVar {
  name: string
  value?: string
  valueFrom?: { secretKeyRef?: { name: string; key: string } }
}
interface Probe {
  exec?: { command: string[] }
}
interface Container {
  name: string
  command?: string[]
  env?: EnvVar[]
  startupProbe?: Probe
  readinessProbe?: Probe
  livenessProbe?: Probe
}


t.test('a pod injected by the webhook runs: probes, runtime and sidecar process an envelope', async (t) => {
  const exchange = testExchange('asya-wh')
  const actor = `wh-${rand()}`
  const next = `wh-next-${rand()}`
  const secrets: Record<string, Record<string, string>> = { 'asya-rabbitmq': { username: 'guest', password: 'guest' } }
  const config = { ...testConfig, transports: { ...testConfig.transports, rabbitmq: { ...testConfig.transports.rabbitmq!, host: '127.0.0.1', exchange } } }
  const r = injectPod(
    {
      metadata: { labels: { 'asya.sh/actor': actor }, annotations: { 'asya.sh/handler': 'sidecar_handlers.echo', 'asya.sh/timeout': '20' } },
      spec: { containers: [{ name: 'asya-runtime', image: 'python:3.12-slim', env: [{ name: 'PYTHONPATH', value: SIDECAR_HANDLERS_DIR }] }] },
    },
    { config, namespace: 'team-a' },
  )
  if (r.kind !== 'injected') throw new Error(`not injected: ${JSON.stringify(r)}`)
  const spec = r.pod.spec as { containers: Container[]; initContainers: Container[] }
  const runtimeC = spec.containers[0] as Container
  const sidecarC = spec.initContainers.find((c) => c.name === 'asya-sidecar') as Container

  // The "volumes": socket-dir → a temp dir, the asya-runtime ConfigMap → the repository's script.
  const socketDir = tmp('asya-wh-pod-')
  t.teardown(() => rmSync(socketDir, { recursive: true, force: true }))
  const metricsPort = await freePort()
  const mapPath = (s: string): string => s.replaceAll('/var/run/asya', socketDir).replaceAll('/opt/asya/asya_runtime.py', join(root, 'runtime-py', 'asya_runtime.py'))
  const envOf = (c: Container): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME }
    for (const e of c.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef
      env[e.name] = ref ? secrets[ref.name]?.[ref.key] : mapPath(e.value ?? '')
    }
    return env
  }
  const probe = (p: Probe | undefined): number => {
    const cmd = (p?.exec?.command ?? []).map(mapPath)
    return spawnSync(cmd[0] as string, cmd.slice(1)).status ?? -1
  }

  t.not(probe(runtimeC.startupProbe), 0, 'startup probe fails before the runtime is up')
  const [cmd, ...args] = (runtimeC.command ?? []).map(mapPath)
  const runtime: ChildProcess = spawn(cmd as string, args, { env: envOf(runtimeC), stdio: 'ignore' })
  t.teardown(() => void runtime.kill('SIGKILL'))
  await waitFor('runtime startup probe', () => probe(runtimeC.startupProbe) === 0, 30_000)
  t.equal(probe(runtimeC.readinessProbe), 0, 'readiness probe passes')
  t.equal(probe(runtimeC.livenessProbe), 0, 'liveness probe passes')

  const client = rabbitTransport({ exchange })
  await client.connect()
  t.teardown(async () => {
    for (const q of [actor, `${actor}-dlq`, next, `${next}-dlq`]) await client.deleteQueue(q).catch(() => undefined)
    await client.close()
  })
  await client.ensureQueue(next)
  const inbox = new Inbox()
  await client.consume(next, inbox.push, { prefetch: 10 })

  const sidecarEnv = { ...envOf(sidecarC), ASYA_METRICS_ADDR: `127.0.0.1:${metricsPort}`, ASYA_LOG_LEVEL: 'warn' }
  const sidecar = spawn(process.execPath, ['--import', './scripts/register-ts.mjs', 'sidecar/main.ts'], { cwd: root, env: sidecarEnv, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  sidecar.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
  const exited = new Promise<number | null>((res) => sidecar.on('exit', (code) => res(code)))
  t.teardown(() => void sidecar.kill('SIGKILL'))
  await waitFor('sidecar readyz', async () => (await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).ok, 60_000)

  const id = `wh-${rand()}`
  await client.publish(actor, envelope(id, [actor, next], { hello: 'webhook' }))
  const d = await inbox.next(30_000)
  const out = json(d)
  t.equal(out.id, id, 'the envelope went through the injected actor to the next one')
  t.same(out.payload, { hello: 'webhook' })
  await d.ack()

  // The recovery path the liveness probe exists for: no ready file → probe fails → kubelet restarts.
  unlinkSync(join(socketDir, 'runtime-ready'))
  t.not(probe(runtimeC.livenessProbe), 0, 'liveness fails once the ready file is gone')

  sidecar.kill('SIGTERM')
  t.equal(await exited, 0, `sidecar drains and exits 0 on SIGTERM (stderr: ${stderr.slice(0, 300)})`)
})
