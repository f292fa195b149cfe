import t from 'tap'
import { copyFileSync, mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { actorPod, admissionReview, certs, get, post, servedCert, startServer, tmp, waitFor, webhookConfig } from './helpers.js'

const fp = (pem: string): string => new X509Certificate(pem).fingerprint256

t.test('rotation: new files are served without a restart; an invalid pair keeps the old cert', async (t) => {
  const a = await certs()
  const dir = tmp('asya-rot-')
  const files = { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') }
  copyFileSync(a.files.cert, files.cert)
  copyFileSync(a.files.key, files.key)
  // A long poll period: the directory watch must notice the change on its own.
  const { server, url, registry } = await startServer(webhookConfig(files, { tlsReloadIntervalMs: 600_000 }))
  t.teardown(() => server.close())
  t.equal((await servedCert(url)).fingerprint256, fp(a.cert), 'serves the first cert')

  const b = await certs(tmp('asya-rot-b-')) // another CA altogether
  copyFileSync(b.files.cert, files.cert) // cert first, key later: a mismatched pair in between
  copyFileSync(b.files.key, files.key)
  await waitFor('the new cert to be served', async () => (await servedCert(url)).fingerprint256 === fp(b.cert))
  const r = await post(url, JSON.stringify(admissionReview(actorPod())), { ca: b.caCert })
  t.equal(r.status, 200, 'the new chain verifies against the new CA')

  writeFileSync(files.cert, '-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n')
  await server.reloadTls()
  t.equal((await servedCert(url)).fingerprint256, fp(b.cert), 'invalid file: still serving the previous cert')
  t.ok(server.isReady(), 'still ready')
  const metrics = (await get(url, '/metrics', b.caCert)).body
  t.match(metrics, /asya_webhook_tls_reloads_total\{result="invalid"\} [1-9]/)
  t.match(metrics, /asya_webhook_tls_reloads_total\{result="loaded"\} [2-9]/)
  t.ok(registry)
})

t.test('Kubernetes Secret volume layout: the ..data symlink swap is picked up', async (t) => {
  const a = await certs()
  const b = await certs(tmp('asya-rot-b-'), { cert: a.caCert, key: a.caKey }) // same CA, new serving cert
  const dir = tmp('asya-secretvol-')
  const v1 = join(dir, '..2026_01_01_v1')
  mkdirSync(v1)
  copyFileSync(a.files.cert, join(v1, 'tls.crt'))
  copyFileSync(a.files.key, join(v1, 'tls.key'))
  symlinkSync('..2026_01_01_v1', join(dir, '..data'))
  symlinkSync('..data/tls.crt', join(dir, 'tls.crt'))
  symlinkSync('..data/tls.key', join(dir, 'tls.key'))
  const { server, url } = await startServer(webhookConfig({ cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') }, { tlsReloadIntervalMs: 600_000 }))
  t.teardown(() => server.close())
  t.equal((await servedCert(url)).fingerprint256, fp(a.cert))
  // What the kubelet does: write a new timestamped dir, then atomically swap ..data.
  const v2 = join(dir, '..2026_01_02_v2')
  mkdirSync(v2)
  copyFileSync(b.files.cert, join(v2, 'tls.crt'))
  copyFileSync(b.files.key, join(v2, 'tls.key'))
  symlinkSync('..2026_01_02_v2', join(dir, '..data_tmp'))
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'))
  await waitFor('the swapped cert to be served', async () => (await servedCert(url)).fingerprint256 === fp(b.cert))
  t.pass('new serving cert in use')
})

t.test('no certificate at start: not ready; ready once the files appear', async (t) => {
  const dir = tmp('asya-late-')
  const files = { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') }
  const { server, url } = await startServer(webhookConfig(files))
  t.teardown(() => server.close())
  t.notOk(server.isReady(), 'not ready without a certificate')
  const c = await certs()
  copyFileSync(c.files.key, files.key)
  copyFileSync(c.files.cert, files.cert)
  await waitFor('ready', () => server.isReady())
  t.equal((await get(url, '/readyz', c.caCert)).status, 200)
})
