import t from 'tap'
import { join } from 'node:path'
import { startSystem } from '../../src/system/main.js'
import { actorPod, admissionReview, certs, post, silent, tmp } from './helpers.js'

t.test('system process serves the webhook beside the metrics listener, one registry', async (t) => {
  const c = await certs()
  const sys = await startSystem({
    logger: silent,
    env: {
      ASYA_CONTROLLER_ENABLED: 'false',
      ASYA_METRICS_ADDR: '127.0.0.1:0',
      ASYA_WEBHOOK_ADDR: '127.0.0.1:0',
      ASYA_TLS_CERT_FILE: c.files.cert,
      ASYA_TLS_KEY_FILE: c.files.key,
      ASYA_SIDECAR_IMAGE: 'img:from-env',
    },
  })
  t.teardown(() => sys.stop())
  t.ok(sys.webhookUrl, 'webhook listening')
  const r = await post(sys.webhookUrl ?? '', JSON.stringify(admissionReview(actorPod())), { ca: c.caCert })
  t.equal(r.status, 200)
  const patch = Buffer.from((r.json() as { response: { patch: string } }).response.patch, 'base64').toString()
  t.match(patch, /img:from-env/, 'configured from env')
  t.equal((await fetch(`${sys.metricsUrl}/readyz`)).status, 200)
  const metrics = await (await fetch(`${sys.metricsUrl}/metrics`)).text()
  t.match(metrics, /asya_webhook_admission_requests_total\{outcome="injected"/, 'webhook metrics on the shared registry')
  t.match(metrics, /process_cpu_user_seconds_total/)
})

t.test('without a certificate the process is live but not ready', async (t) => {
  const dir = tmp('asya-nocert-')
  const sys = await startSystem({
    logger: silent,
    env: { ASYA_CONTROLLER_ENABLED: 'false', ASYA_METRICS_ADDR: '127.0.0.1:0', ASYA_WEBHOOK_ADDR: '127.0.0.1:0', ASYA_TLS_CERT_FILE: join(dir, 'tls.crt'), ASYA_TLS_KEY_FILE: join(dir, 'tls.key') },
  })
  t.teardown(() => sys.stop())
  t.equal((await fetch(`${sys.metricsUrl}/healthz`)).status, 200)
  t.equal((await fetch(`${sys.metricsUrl}/readyz`)).status, 503)
})

t.test('a bad webhook setting fails the start naming the variable', async (t) => {
  await t.rejects(startSystem({ logger: silent, env: { ASYA_CONTROLLER_ENABLED: 'false', ASYA_SIDECAR_MEMORY_LIMIT: 'lots' } }), { code: 'ASYA_ERR_CONFIG_INVALID', message: /ASYA_SIDECAR_MEMORY_LIMIT/ })
})
