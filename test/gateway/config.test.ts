/** Gateway env: upstream names, every problem reported at once naming the variable; startup errors from the real entry point. */
import { spawnSync } from 'node:child_process'
import t from 'tap'
import { readGatewayConfig } from '../../gateway/config.js'

t.test('defaults and upstream names', async (t) => {
  const c = readGatewayConfig({})
  t.equal(c.port, 8080)
  t.equal(c.databaseUrl, undefined)
  t.equal(c.transport.name, 'rabbitmq')
  t.equal(c.keepaliveIntervalMs, 15_000)
  const s = readGatewayConfig({ ASYA_SQS_ENDPOINT: 'http://127.0.0.1:1', ASYA_SQS_REGION: 'eu-west-1', ASYA_LOG_LEVEL: 'INFO' })
  t.equal(s.transport.name, 'sqs', 'upstream: SQS when only its endpoint is set')
  t.equal(s.transport.sqs?.region, 'eu-west-1')
  t.equal(s.logLevel, 'info')
})

t.test('all problems at once, each naming its variable', async (t) => {
  let err: any
  try {
    readGatewayConfig({ ASYA_GATEWAY_PORT: 'x', ASYA_DATABASE_URL: 'mysql://a', ASYA_DB_MAX_CONNS: '0', ASYA_LOG_LEVEL: 'loud', ASYA_GATEWAY_SWEEP_INTERVAL: 'soon' })
  } catch (e) {
    err = e
  }
  t.equal(err?.code, 'ASYA_ERR_CONFIG_INVALID')
  const p: string[] = err.details.problems
  for (const v of ['ASYA_GATEWAY_PORT', 'ASYA_DATABASE_URL', 'ASYA_DB_MAX_CONNS', 'ASYA_LOG_LEVEL', 'ASYA_GATEWAY_SWEEP_INTERVAL']) {
    t.ok(p.some((m) => m.startsWith(v)), `${v} named`)
  }
})

t.test('the entry point exits 1 with one log line naming the variable or the tool config key', async (t) => {
  const run = (env: Record<string, string>) =>
    spawnSync(process.execPath, ['--import', './scripts/register-ts.mjs', 'gateway/main.ts'], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 })
  const bad = run({ ASYA_GATEWAY_PORT: '99999' })
  t.equal(bad.status, 1)
  const line = JSON.parse(bad.stdout.trim().split('\n').at(-1) as string)
  t.equal(line.level, 'fatal')
  t.equal(line.code, 'ASYA_ERR_CONFIG_INVALID')
  t.match(line.msg, /ASYA_GATEWAY_PORT/)
  const dir = await import('node:fs').then((fs) => fs.mkdtempSync('/tmp/asya-gw-cfg-'))
  await import('node:fs').then((fs) => fs.writeFileSync(`${dir}/routes.yaml`, 'tools:\n  - name: x\n    route: [a]\n    timout: 3\n'))
  const cfg = run({ ASYA_CONFIG_PATH: `${dir}/routes.yaml`, ASYA_TRANSPORT: 'memory' })
  t.equal(cfg.status, 1)
  const l2 = JSON.parse(cfg.stdout.trim().split('\n').at(-1) as string)
  t.equal(l2.code, 'ASYA_ERR_TOOL_CONFIG_INVALID')
  t.match(l2.msg, /routes\.yaml: tools\[0\]\(x\)\.timout: unknown key/)
})
