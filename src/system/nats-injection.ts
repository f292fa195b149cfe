/**
 * NATS credentials the webhook hands to every injected NATS sidecar beyond user/password
 * (docs/nats.md#credentials-and-tls-in-the-pod): a token by `secretKeyRef`, and the files the NATS
 * client reads at each (re)connection — a `.creds` file, an NKEY seed, a CA bundle, a client
 * certificate — from Secrets mounted read-only into the sidecar. Read once from the system
 * process's env (the `asya-config` ConfigMap); each Secret must exist in every actor namespace,
 * like the other credential Secrets.
 *
 * The names are the system's own (`ASYA_NATS_*_SECRET`): the system process's `ASYA_NATS_CREDS_FILE`
 * and friends are paths inside *its* pod, for its own connection, and are never copied into pods.
 */
import type { EnvReader } from '../config/env.js'

export interface SecretKeyRef {
  name: string
  key: string
}

export interface NatsInjection {
  /** ASYA_NATS_TOKEN_SECRET (+ ASYA_NATS_TOKEN_SECRET_KEY, default `token`) → ASYA_NATS_TOKEN. */
  token?: SecretKeyRef
  /** ASYA_NATS_CREDS_SECRET (+ _KEY, default `nats.creds`) → mounted, ASYA_NATS_CREDS_FILE. */
  creds?: SecretKeyRef
  /** ASYA_NATS_NKEY_SECRET (+ _KEY, default `nkey.seed`) → mounted, ASYA_NATS_NKEY_SEED_FILE. */
  nkeySeed?: SecretKeyRef
  /** ASYA_NATS_TLS_CA_SECRET (+ _KEY, default `ca.crt`) → mounted, ASYA_NATS_TLS_CA_FILE. */
  tlsCa?: SecretKeyRef
  /**
   * ASYA_NATS_TLS_CLIENT_SECRET (a `kubernetes.io/tls` Secret; keys ASYA_NATS_TLS_CLIENT_CERT_KEY /
   * _KEY_KEY, default `tls.crt` / `tls.key`) → mounted, ASYA_NATS_TLS_CERT_FILE / _KEY_FILE.
   */
  tlsClient?: { name: string; certKey: string; keyKey: string }
}

const SECRET_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/
const SECRET_KEY = /^[-._a-zA-Z0-9]+$/

/**
 * The NATS Secrets of every sidecar, or undefined when none is configured. `natsConfigured`: the
 * system has a NATS transport; Secrets set without one would silently do nothing, so they fail.
 */
export function readNatsInjection(r: EnvReader, natsConfigured: boolean): NatsInjection | undefined {
  const secretName = (variable: string, name: string | undefined): string | undefined => {
    if (name !== undefined && !SECRET_NAME.test(name)) r.fail(variable, `"${name}" is not a Secret name (DNS-1123 subdomain)`)
    return name
  }
  const secretKey = (variable: string, key: string): string => {
    if (!SECRET_KEY.test(key)) r.fail(variable, `"${key}" is not a Secret key (letters, digits, '-', '_', '.')`)
    return key
  }
  const ref = (nameVar: string, name: string | undefined, keyVar: string, key: string): SecretKeyRef | undefined => {
    const n = secretName(nameVar, name)
    const k = secretKey(keyVar, key)
    return n === undefined ? undefined : { name: n, key: k }
  }
  // Every variable spelled out (not built from a prefix): docs/configuration.md is checked against them.
  const token = ref('ASYA_NATS_TOKEN_SECRET', r.string('ASYA_NATS_TOKEN_SECRET'), 'ASYA_NATS_TOKEN_SECRET_KEY', r.string('ASYA_NATS_TOKEN_SECRET_KEY', 'token'))
  const creds = ref('ASYA_NATS_CREDS_SECRET', r.string('ASYA_NATS_CREDS_SECRET'), 'ASYA_NATS_CREDS_SECRET_KEY', r.string('ASYA_NATS_CREDS_SECRET_KEY', 'nats.creds'))
  const nkeySeed = ref('ASYA_NATS_NKEY_SECRET', r.string('ASYA_NATS_NKEY_SECRET'), 'ASYA_NATS_NKEY_SECRET_KEY', r.string('ASYA_NATS_NKEY_SECRET_KEY', 'nkey.seed'))
  const tlsCa = ref('ASYA_NATS_TLS_CA_SECRET', r.string('ASYA_NATS_TLS_CA_SECRET'), 'ASYA_NATS_TLS_CA_SECRET_KEY', r.string('ASYA_NATS_TLS_CA_SECRET_KEY', 'ca.crt'))
  const clientName = secretName('ASYA_NATS_TLS_CLIENT_SECRET', r.string('ASYA_NATS_TLS_CLIENT_SECRET'))
  const certKey = secretKey('ASYA_NATS_TLS_CLIENT_CERT_KEY', r.string('ASYA_NATS_TLS_CLIENT_CERT_KEY', 'tls.crt'))
  const keyKey = secretKey('ASYA_NATS_TLS_CLIENT_KEY_KEY', r.string('ASYA_NATS_TLS_CLIENT_KEY_KEY', 'tls.key'))
  if (certKey === keyKey) r.fail('ASYA_NATS_TLS_CLIENT_KEY_KEY', `is the same key as ASYA_NATS_TLS_CLIENT_CERT_KEY ("${keyKey}"): certificate and private key are two files`)
  const out: NatsInjection = {
    ...(token ? { token } : {}),
    ...(creds ? { creds } : {}),
    ...(nkeySeed ? { nkeySeed } : {}),
    ...(tlsCa ? { tlsCa } : {}),
    ...(clientName !== undefined ? { tlsClient: { name: clientName, certKey, keyKey } } : {}),
  }
  if (Object.keys(out).length === 0) return undefined
  if (!natsConfigured) {
    // Secrets without a NATS transport would silently do nothing: say so at start.
    const set = { ASYA_NATS_TOKEN_SECRET: token, ASYA_NATS_CREDS_SECRET: creds, ASYA_NATS_NKEY_SECRET: nkeySeed, ASYA_NATS_TLS_CA_SECRET: tlsCa, ASYA_NATS_TLS_CLIENT_SECRET: out.tlsClient }
    for (const [variable, v] of Object.entries(set)) if (v !== undefined) r.fail(variable, 'is set but the NATS transport is not configured (ASYA_NATS_URL or ASYA_TRANSPORT=nats)')
    return undefined
  }
  return out
}
