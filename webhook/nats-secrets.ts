/**
 * NATS credentials of an injected sidecar beyond user/password (docs/nats.md#credentials-and-tls-in-the-pod):
 * a pure function from the system's {@link NatsInjection} to the env, volumes and mounts the sidecar
 * gets. A token travels by `secretKeyRef`; `.creds`, NKEY seed, CA bundle and client certificate
 * are Secret volumes mounted read-only into the sidecar only (the runtime container, which runs the
 * user's code, never sees them), with the sidecar's ASYA_NATS_*_FILE pointing into the mount.
 */
import type { NatsInjection } from '../src/system/nats-injection.js'
import type { EnvEntry } from './claim-check-env.js'

/** Where the Secrets appear in the sidecar: one directory per Secret volume. */
export const NATS_SECRETS_DIR = '/etc/asya/nats'

type J = Record<string, unknown>

export interface NatsSidecarSecrets {
  env: EnvEntry[]
  volumes: J[]
  mounts: J[]
}

export function natsSidecarSecrets(s: NatsInjection | undefined): NatsSidecarSecrets {
  const out: NatsSidecarSecrets = { env: [], volumes: [], mounts: [] }
  if (s === undefined) return out
  if (s.token) out.env.push({ name: 'ASYA_NATS_TOKEN', valueFrom: { secretKeyRef: { name: s.token.name, key: s.token.key } } })
  const mount = (dir: string, secretName: string, files: Array<{ key: string; variable: string }>): void => {
    const volume = `asya-nats-${dir}`
    const mountPath = `${NATS_SECRETS_DIR}/${dir}`
    // Only the keys the sidecar reads are projected. 0444: the sidecar runs as a non-root user and
    // the pod may set no fsGroup, so the files must be readable by others; nothing writes them.
    out.volumes.push({ name: volume, secret: { secretName, items: files.map((f) => ({ key: f.key, path: f.key })), defaultMode: 0o444 } })
    out.mounts.push({ name: volume, mountPath, readOnly: true })
    for (const f of files) out.env.push({ name: f.variable, value: `${mountPath}/${f.key}` })
  }
  if (s.creds) mount('creds', s.creds.name, [{ key: s.creds.key, variable: 'ASYA_NATS_CREDS_FILE' }])
  if (s.nkeySeed) mount('nkey', s.nkeySeed.name, [{ key: s.nkeySeed.key, variable: 'ASYA_NATS_NKEY_SEED_FILE' }])
  if (s.tlsCa) mount('tls-ca', s.tlsCa.name, [{ key: s.tlsCa.key, variable: 'ASYA_NATS_TLS_CA_FILE' }])
  if (s.tlsClient) {
    mount('tls-client', s.tlsClient.name, [
      { key: s.tlsClient.certKey, variable: 'ASYA_NATS_TLS_CERT_FILE' },
      { key: s.tlsClient.keyKey, variable: 'ASYA_NATS_TLS_KEY_FILE' },
    ])
  }
  return out
}
