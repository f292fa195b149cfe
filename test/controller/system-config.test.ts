/**
 * readSystemConfig (src/system/config.ts): the system process's whole env read once, every
 * problem — log level, listen addresses, controller, transports, webhook — reported together.
 */
import t from 'tap'
import { isAsyaError } from '../../src/errors.js'
import { readSystemConfig } from '../../src/system/config.js'

t.test('defaults: one read gives the controller, the transports and the webhook the same settings', async (t) => {
  const c = readSystemConfig({ POD_NAMESPACE: 'ops' })
  t.equal(c.logLevel, 'info')
  t.equal(c.systemNamespace, 'ops', 'the pod namespace when ASYA_SYSTEM_NAMESPACE is unset')
  t.same(c.metrics, { host: '0.0.0.0', port: 8081 })
  t.equal(c.controller.leaseNamespace, 'ops')
  t.equal(c.webhook.systemNamespace, 'ops')
  t.ok(c.webhook.excludedNamespaces.includes('ops'), 'the webhook never mutates its own namespace')
  t.equal(c.webhook.transports, c.transports, 'the transports are read once and shared')
  t.equal(c.transports.defaultTransport, 'rabbitmq')
  t.equal(c.runtimeScriptPath, undefined)
  t.equal(readSystemConfig({ ASYA_SYSTEM_NAMESPACE: 'x', POD_NAMESPACE: 'ops', ASYA_LOG_LEVEL: 'DEBUG', ASYA_METRICS_ADDR: '127.0.0.1:0' }).logLevel, 'debug')
})

t.test('every bad variable of every part is named in one error', async (t) => {
  let err: unknown
  try {
    readSystemConfig({
      ASYA_LOG_LEVEL: 'loud',
      ASYA_METRICS_ADDR: 'nope',
      ASYA_LEASE_DURATION: 'soon',
      ASYA_TRANSPORT: 'kafka',
      ASYA_WEBHOOK_ADDR: 'x:99999',
      ASYA_SIDECAR_IMAGE_PULL_POLICY: 'Sometimes',
    })
  } catch (e) {
    err = e
  }
  t.ok(isAsyaError(err, 'ASYA_ERR_CONFIG_INVALID'), 'one ASYA_ERR_CONFIG_INVALID')
  const message = String((err as Error).message)
  for (const name of ['ASYA_LOG_LEVEL', 'ASYA_METRICS_ADDR', 'ASYA_LEASE_DURATION', 'ASYA_TRANSPORT', 'ASYA_WEBHOOK_ADDR', 'ASYA_SIDECAR_IMAGE_PULL_POLICY']) {
    t.match(message, name, `names ${name}`)
  }
})
