/**
 * NATS credentials and TLS in the pod (docs/nats.md#credentials-and-tls-in-the-pod): the system's
 * ASYA_NATS_*_SECRET settings reach every injected NATS sidecar as a token by `secretKeyRef` and
 * Secret volumes for `.creds`, NKEY seed, CA and client certificate, mounted into the sidecar only.
 * The pod is then "run" the way the kubelet would (Secret items written under the mount paths, env
 * resolved) and the sidecar's own configuration and transport connect with it to a real
 * nats-server that demands what the Secrets hold (NKEY + mutual TLS; token + server TLS).
 */
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { createUser } from '@nats-io/nkeys'
import { connect, nkeyAuthenticator } from '@nats-io/transport-node'
import { readSidecarConfig } from '../../sidecar/config.js'
import { readWebhookConfig } from '../../src/system/config.js'
import { createTransport } from '../../src/transport/create-transport.js'
import { injectPod } from '../../webhook/inject.js'
import { generateCerts } from '../../webhook/certs.js'
import { NATS_SECRETS_DIR } from '../../webhook/nats-secrets.js'
import { startPrivateNats } from '../support/private-nats.js'

const run = promisify(execFile)

type EnvVar = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }
type Mount = { name: string; mountPath: string; readOnly?: boolean }
type Container = { name: string; env?: EnvVar[]; volumeMounts?: Mount[] }
type Volume = { name: string; secret?: { secretName: string; items?: Array<{ key: string; path: string }>; defaultMode?: number } }
type Secrets = Record<string, Record<string, string>>

const NATS_SYSTEM = { ASYA_TRANSPORT: 'nats', ASYA_NATS_URL: 'nats://nats.nats.svc:4222', ASYA_SIDECAR_IMAGE: 'ghcr.io/asya-ts/asya-sidecar:0.1.0' }

function pod(): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { labels: { 'asya.sh/actor': 'embed' }, annotations: { 'asya.sh/handler': 'embed.run' } },
    spec: { containers: [{ name: 'asya-runtime', image: 'python:3.12-slim' }] },
  }
}

function injected(system: Record<string, string>): { sidecar: Container; runtime: Container; volumes: Volume[] } {
  const r = injectPod(pod(), { config: readWebhookConfig(system), namespace: 'team-n' })
  if (r.kind !== 'injected') throw new Error(`not injected: ${JSON.stringify(r)}`)
  const spec = r.pod.spec as { initContainers?: Container[]; containers: Container[]; volumes: Volume[] }
  const all = [...(spec.initContainers ?? []), ...spec.containers]
  return { sidecar: all.find((c) => c.name === 'asya-sidecar') as Container, runtime: all.find((c) => c.name === 'asya-runtime') as Container, volumes: spec.volumes }
}

/**
 * What the kubelet does for the sidecar: Secret volume items written under the mount paths (here
 * below `root`, as a container's filesystem would be), env resolved from Secrets. Paths in the env
 * that point into a mount are read below `root` too.
 */
function kubelet(c: Container, volumes: Volume[], secrets: Secrets, root: string): Record<string, string> {
  for (const m of c.volumeMounts ?? []) {
    const v = volumes.find((x) => x.name === m.name)
    if (!v?.secret) continue
    const data = secrets[v.secret.secretName]
    if (!data) throw new Error(`volume ${v.name}: Secret ${v.secret.secretName} does not exist`)
    for (const item of v.secret.items ?? Object.keys(data).map((key) => ({ key, path: key }))) {
      const value = data[item.key]
      if (value === undefined) throw new Error(`volume ${v.name}: Secret ${v.secret.secretName} has no key ${item.key}`)
      const file = join(root, m.mountPath, item.path)
      mkdirSync(dirname(file), { recursive: true })
      writeFileSync(file, value, { mode: v.secret.defaultMode ?? 0o644 })
    }
  }
  const env: Record<string, string> = {}
  for (const e of c.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef
    const v = ref ? secrets[ref.name]?.[ref.key] : e.value
    if (v === undefined) throw new Error(`env ${e.name}: ${ref ? `Secret ${ref.name} has no key ${ref.key}` : 'no value'}`)
    env[e.name] = v.startsWith(`${NATS_SECRETS_DIR}/`) ? join(root, v) : v
  }
  return env
}

/** connect() retries for ever (a sidecar waits for its broker): a test gives up after a while. */
async function connected(tr: { connect(): Promise<void>; close(): Promise<void> }): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('the sidecar transport did not connect within 20 s')), 20_000)))
  try {
    await Promise.race([tr.connect(), timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate (clientAuth) signed by it. */
async function pki(): Promise<{ dir: string; ca: string; serverCert: string; serverKey: string; clientCert: string; clientKey: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'asya-nats-pki-'))
  const server = await generateCerts({ dir, service: 'nats', namespace: 'nats', extraNames: ['IP:127.0.0.1', 'DNS:localhost'], days: 1 })
  const key = join(dir, 'client.key')
  const csr = join(dir, 'client.csr')
  const ext = join(dir, 'client.ext')
  const crt = join(dir, 'client.crt')
  writeFileSync(ext, 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n')
  await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=asya-sidecar'])
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', server.files.caCert, '-CAkey', server.files.caKey, '-set_serial', '0x1234', '-out', crt, '-days', '1', '-extfile', ext])
  return { dir, ca: server.caCert, serverCert: server.files.cert, serverKey: server.files.key, clientCert: readFileSync(crt, 'utf8'), clientKey: readFileSync(key, 'utf8') }
}

t.test('system settings → sidecar: token by secretKeyRef, one read-only Secret volume per file, env pointing into it; the runtime sees none', async (t) => {
  const { sidecar, runtime, volumes } = injected({
    ...NATS_SYSTEM,
    ASYA_NATS_TOKEN_SECRET: 'nats-token',
    ASYA_NATS_CREDS_SECRET: 'nats-user',
    ASYA_NATS_CREDS_SECRET_KEY: 'embed.creds',
    ASYA_NATS_NKEY_SECRET: 'nats-nkey',
    ASYA_NATS_TLS_CA_SECRET: 'nats-ca',
    ASYA_NATS_TLS_CLIENT_SECRET: 'nats-client-tls',
  })
  const env = Object.fromEntries((sidecar.env ?? []).map((e) => [e.name, e]))
  t.same(env.ASYA_NATS_TOKEN?.valueFrom, { secretKeyRef: { name: 'nats-token', key: 'token' } }, 'token by reference, default key')
  t.equal(env.ASYA_NATS_TOKEN?.value, undefined, 'never inline')
  t.equal(env.ASYA_NATS_CREDS_FILE?.value, '/etc/asya/nats/creds/embed.creds')
  t.equal(env.ASYA_NATS_NKEY_SEED_FILE?.value, '/etc/asya/nats/nkey/nkey.seed')
  t.equal(env.ASYA_NATS_TLS_CA_FILE?.value, '/etc/asya/nats/tls-ca/ca.crt')
  t.equal(env.ASYA_NATS_TLS_CERT_FILE?.value, '/etc/asya/nats/tls-client/tls.crt')
  t.equal(env.ASYA_NATS_TLS_KEY_FILE?.value, '/etc/asya/nats/tls-client/tls.key')
  const ours = volumes.filter((v) => v.name.startsWith('asya-nats-'))
  t.same(
    ours.map((v) => [v.name, v.secret?.secretName, v.secret?.items?.map((i) => i.key)]),
    [
      ['asya-nats-creds', 'nats-user', ['embed.creds']],
      ['asya-nats-nkey', 'nats-nkey', ['nkey.seed']],
      ['asya-nats-tls-ca', 'nats-ca', ['ca.crt']],
      ['asya-nats-tls-client', 'nats-client-tls', ['tls.crt', 'tls.key']],
    ],
  )
  t.ok(
    (sidecar.volumeMounts ?? []).filter((m) => m.name.startsWith('asya-nats-')).every((m) => m.readOnly === true),
    'mounted read-only',
  )
  t.notOk((runtime.volumeMounts ?? []).some((m) => m.name.startsWith('asya-nats-')), 'the handler container mounts none of them')
  t.notOk((runtime.env ?? []).some((e) => e.name.startsWith('ASYA_NATS_')), 'and gets no NATS env')

  const rabbit = injectPod(
    { ...pod(), metadata: { labels: { 'asya.sh/actor': 'embed' }, annotations: { 'asya.sh/handler': 'embed.run', 'asya.sh/transport': 'rabbitmq' } } },
    { config: readWebhookConfig({ ...NATS_SYSTEM, ASYA_RABBITMQ_HOST: 'rabbitmq', ASYA_NATS_NKEY_SECRET: 'nats-nkey' }), namespace: 'team-n' },
  )
  t.notMatch(JSON.stringify(rabbit.kind === 'injected' ? rabbit.pod : {}), /asya-nats-|ASYA_NATS_/, 'a RabbitMQ pod in the same cluster gets none of it')
})

t.test('NKEY seed + mutual TLS from Secrets: the injected sidecar connects to a server that demands both', async (t) => {
  const p = await pki()
  const nkey = createUser()
  const seed = new TextDecoder().decode(nkey.getSeed())
  const server = await startPrivateNats({
    config: [
      `tls { cert_file: "${p.serverCert}", key_file: "${p.serverKey}", ca_file: "${join(p.dir, 'ca.crt')}", verify: true, timeout: 5 }`,
      `authorization { users = [ { nkey: "${nkey.getPublicKey()}" } ] }`,
    ].join('\n'),
  })
  t.teardown(() => server.destroy())
  const { sidecar, volumes } = injected({
    ...NATS_SYSTEM,
    ASYA_NATS_URL: `tls://127.0.0.1:${server.port}`,
    ASYA_NATS_NKEY_SECRET: 'embed-nkey',
    ASYA_NATS_TLS_CA_SECRET: 'embed-tls',
    ASYA_NATS_TLS_CLIENT_SECRET: 'embed-tls',
  })
  // One cert-manager style Secret (ca.crt, tls.crt, tls.key) feeds both TLS volumes.
  const secrets: Secrets = { 'embed-nkey': { 'nkey.seed': `${seed}\n` }, 'embed-tls': { 'ca.crt': p.ca, 'tls.crt': p.clientCert, 'tls.key': p.clientKey } }
  const env = kubelet(sidecar, volumes, secrets, mkdtempSync(join(tmpdir(), 'asya-pod-')))
  const cfg = readSidecarConfig(env)
  t.equal(cfg.transport.nats?.nkeySeedFile, env.ASYA_NATS_NKEY_SEED_FILE, 'the sidecar reads the seed from the mount')
  const tr = await createTransport(cfg.transport)
  t.teardown(() => tr.close())
  await connected(tr)
  await tr.ensureQueue('embed')
  await tr.publish('embed', Buffer.from('{"over":"mtls"}'))
  t.equal(await tr.messageCount('embed'), 1, 'connected, authenticated and published')

  // The server really demands them: the same NKEY without the client certificate is refused.
  const refused = await connect({ servers: `tls://127.0.0.1:${server.port}`, authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)), tls: { ca: p.ca }, reconnect: false, timeout: 5000 }).then(
    async (nc) => {
      await nc.close()
      return 'connected'
    },
    (err: unknown) => String(err),
  )
  t.not(refused, 'connected', `no client certificate, no connection (${refused})`)
})

t.test('token by secretKeyRef + the server CA from a Secret: the injected sidecar connects over TLS', async (t) => {
  const p = await pki()
  const server = await startPrivateNats({
    config: [`tls { cert_file: "${p.serverCert}", key_file: "${p.serverKey}", timeout: 5 }`, `authorization { token: "t0ken-never-inline" }`].join('\n'),
  })
  t.teardown(() => server.destroy())
  const { sidecar, volumes } = injected({ ...NATS_SYSTEM, ASYA_NATS_URL: `tls://127.0.0.1:${server.port}`, ASYA_NATS_TOKEN_SECRET: 'embed-token', ASYA_NATS_TLS_CA_SECRET: 'embed-ca' })
  t.notMatch(JSON.stringify(sidecar), /t0ken-never-inline/, 'the token is not in the pod spec')
  const env = kubelet(sidecar, volumes, { 'embed-token': { token: 't0ken-never-inline' }, 'embed-ca': { 'ca.crt': p.ca } }, mkdtempSync(join(tmpdir(), 'asya-pod-')))
  const tr = await createTransport(readSidecarConfig(env).transport)
  t.teardown(() => tr.close())
  await connected(tr)
  await tr.ensureQueue('embed')
  t.equal(await tr.messageCount('embed'), 0, 'connected with the token, server verified by the mounted CA')
})

t.test('system configuration: bad Secret names and keys reported at once; NATS Secrets without a NATS transport refused', async (t) => {
  const message = (env: Record<string, string>): string => {
    try {
      readWebhookConfig(env)
    } catch (err) {
      return (err as Error).message
    }
    return 'accepted'
  }
  const all = message({
    ...NATS_SYSTEM,
    ASYA_NATS_CREDS_SECRET: 'Bad Secret',
    ASYA_NATS_NKEY_SECRET_KEY: 'a/b',
    ASYA_NATS_TLS_CLIENT_SECRET: 'tls',
    ASYA_NATS_TLS_CLIENT_CERT_KEY: 'both',
    ASYA_NATS_TLS_CLIENT_KEY_KEY: 'both',
  })
  for (const n of ['ASYA_NATS_CREDS_SECRET', 'ASYA_NATS_NKEY_SECRET_KEY', 'ASYA_NATS_TLS_CLIENT_KEY_KEY']) t.match(all, n, `${n} reported`)
  t.match(message({ ASYA_TRANSPORT: 'rabbitmq', ASYA_NATS_TLS_CA_SECRET: 'nats-ca' }), /ASYA_NATS_TLS_CA_SECRET: is set but the NATS transport is not configured/)
  t.equal(message({ ...NATS_SYSTEM, ASYA_NATS_TLS_CA_SECRET: 'nats-ca' }), 'accepted')
  t.equal(readWebhookConfig(NATS_SYSTEM).natsSecrets, undefined, 'none configured: nothing injected')
})
