import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startSystem } from '../../src/system/main.js'
import { annotations, deployment, rid, silentLogger, startEnv, waitFor, type Env } from './helpers.js'
import { freePort } from '../support/free-port.js'

let env: Env
const dir = mkdtempSync(join(tmpdir(), 'asya-main-'))
const script = join(dir, 'asya_runtime.py')
writeFileSync(script, '# runtime for main test\n')
t.before(async () => {
  env = await startEnv()
})
t.teardown(async () => {
  await env.close()
})


t.test('system process: reads env config, leads, wires a workload, serves metrics, stops', async (t) => {
  const ns = rid('ns')
  const actor = rid('a')
  const [happy, error] = [rid('happy'), rid('error')]
  for (const a of [actor, happy, error]) env.created.add(`asya-${a}`).add(`asya-${a}-dlq`)
  const sys = await startSystem({
    kubeConfig: env.kube.kubeConfig,
    logger: silentLogger,
    env: {
      ASYA_METRICS_ADDR: '127.0.0.1:0',
      ASYA_RUNTIME_SCRIPT: script,
      ASYA_RABBITMQ_EXCHANGE: env.exchange,
      ASYA_RABBITMQ_HOST: '127.0.0.1',
      ASYA_SYSTEM_NAMESPACE: rid('sys'),
      ASYA_LEASE_DURATION: '2s',
      ASYA_LEASE_RENEW_DEADLINE: '1s',
      ASYA_LEASE_RETRY_PERIOD: '200ms',
      ASYA_ACTOR_HAPPY_END: happy,
      ASYA_ACTOR_ERROR_END: error,
    },
  })
  for (const q of [happy, error]) {
    // No end-actor workload exists: the queues are there anyway, so results are never unroutable.
    await waitFor(`asya-${q} and its DLQ`, async () => (await env.check(`asya-${q}`)) !== undefined && (await env.check(`asya-${q}-dlq`)) !== undefined)
  }
  t.pass('end-actor queues and DLQs created with no end actor labelled')
  await env.apis.apps.createNamespacedDeployment({ namespace: ns, body: deployment(ns, 'm', actor) })
  await waitFor('Ready', async () => (await annotations(env.apis, ns, 'm'))['asya.sh/status'] === 'Ready')
  t.ok(sys.isLeader(), 'the only replica leads')
  const cm = await env.apis.core.readNamespacedConfigMap({ name: 'asya-runtime', namespace: ns })
  t.equal(cm.data?.['asya_runtime.py'], '# runtime for main test\n', 'ConfigMap holds the configured runtime script')
  const metrics = await (await fetch(`${sys.metricsUrl}/metrics`)).text()
  t.match(metrics, /asya_controller_reconcile_total/)
  t.match(metrics, /process_cpu_user_seconds_total/, 'one registry with default metrics')
  await sys.stop()
  t.notOk(sys.isLeader(), 'not leading after stop')
})

t.test('invalid configuration is a startup error naming the variable', async (t) => {
  await t.rejects(
    startSystem({ kubeConfig: env.kube.kubeConfig, logger: silentLogger, env: { ASYA_CONTROLLER_CONCURRENCY: 'many', ASYA_RUNTIME_SCRIPT: script } }),
    { code: 'ASYA_ERR_CONFIG_INVALID', message: /ASYA_CONTROLLER_CONCURRENCY/ },
  )
})

t.test('as a process: SIGTERM stops it gracefully with exit code 0', async (t) => {
  const kubeconfigPath = join(dir, 'kubeconfig')
  writeFileSync(kubeconfigPath, env.kube.kubeConfig.exportConfig())
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', './scripts/register-ts.mjs', 'src/system/main.ts'], {
    env: {
      ...process.env,
      KUBECONFIG: kubeconfigPath,
      ASYA_METRICS_ADDR: `127.0.0.1:${port}`,
      ASYA_RUNTIME_SCRIPT: script,
      ASYA_RABBITMQ_EXCHANGE: env.exchange,
      ASYA_RABBITMQ_HOST: '127.0.0.1',
      ASYA_SYSTEM_NAMESPACE: rid('sys'),
      ASYA_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  child.stdout.resume()
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
  await waitFor('healthz', async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 30_000)
  child.kill('SIGTERM')
  t.equal(await exited, 0, `exit 0 (stderr: ${stderr.slice(0, 500)})`)
})
