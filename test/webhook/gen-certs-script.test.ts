import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { actorPod, admissionReview, post, startServer, tmp, webhookConfig } from './helpers.js'

t.test('certs/gen-certs.sh makes a CA and a serving cert for <service>.<namespace>.svc and prints the caBundle', async (t) => {
  const dir = tmp('asya-gencerts-')
  const r = spawnSync('bash', ['certs/gen-certs.sh', '-s', 'asya-webhook', '-n', 'asya-system', '-d', dir, '-days', '30'], { encoding: 'utf8' })
  t.equal(r.status, 0, r.stderr)
  const caBundle = r.stdout.trim().split('\n').pop() ?? ''
  const ca = readFileSync(join(dir, 'ca.crt'), 'utf8')
  t.equal(Buffer.from(caBundle, 'base64').toString('utf8'), ca, 'last stdout line is base64(ca.crt)')
  const leaf = new X509Certificate(readFileSync(join(dir, 'tls.crt')))
  t.ok(leaf.verify(new X509Certificate(ca).publicKey), 'signed by the CA')
  t.match(leaf.subjectAltName, /DNS:asya-webhook\.asya-system\.svc\b/)
  t.equal(leaf.checkHost('asya-webhook.asya-system.svc'), 'asya-webhook.asya-system.svc')
  const { server, url } = await startServer(webhookConfig({ cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') }))
  t.teardown(() => server.close())
  t.equal((await post(url, JSON.stringify(admissionReview(actorPod())), { ca })).status, 200, 'served and verified like the API server does')
  t.equal(spawnSync('bash', ['certs/gen-certs.sh', '--bogus'], { encoding: 'utf8' }).status, 2, 'bad arguments exit 2')
})
