import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { AsyaError } from '../errors.js'
import { EnvReader } from '../config/env.js'

/** Controller-only settings (the shared transport settings live in src/system/config.ts). */
export interface ControllerSettings {
  enabled: boolean
  /** Full resync period. */
  resyncMs: number
  concurrency: number
  leaderElection: boolean
  leaseName: string
  /** Namespace of the Lease: the system namespace. */
  leaseNamespace: string
  leaseDurationMs: number
  renewDeadlineMs: number
  retryPeriodMs: number
  identity: string
  /** SQS redrive: receives before a message moves to the DLQ. */
  sqsMaxReceiveCount: number
}

/**
 * Reads ASYA_CONTROLLER_* variables. Identity defaults to the pod name (downward API `POD_NAME`)
 * plus a random suffix, so a restarted pod never mistakes its predecessor's lease for its own.
 */
export function readControllerSettings(env: NodeJS.ProcessEnv, systemNamespace: string): ControllerSettings {
  const r = new EnvReader(env)
  const s: ControllerSettings = {
    enabled: r.bool('ASYA_CONTROLLER_ENABLED', true),
    resyncMs: r.duration('ASYA_CONTROLLER_RESYNC', 300_000, { minMs: 1000 }),
    concurrency: r.int('ASYA_CONTROLLER_CONCURRENCY', 8, { min: 1, max: 256 }),
    leaderElection: r.bool('ASYA_LEADER_ELECTION', true),
    leaseName: r.string('ASYA_LEASE_NAME', 'asya-controller'),
    leaseNamespace: r.string('ASYA_LEASE_NAMESPACE', systemNamespace),
    leaseDurationMs: r.duration('ASYA_LEASE_DURATION', 15_000, { minMs: 1000 }),
    renewDeadlineMs: r.duration('ASYA_LEASE_RENEW_DEADLINE', 10_000, { minMs: 500 }),
    retryPeriodMs: r.duration('ASYA_LEASE_RETRY_PERIOD', 2_000, { minMs: 100 }),
    identity: `${r.string('POD_NAME', hostname())}-${randomBytes(3).toString('hex')}`,
    sqsMaxReceiveCount: r.int('ASYA_SQS_MAX_RECEIVE_COUNT', 5, { min: 1, max: 1000 }),
  }
  if (s.renewDeadlineMs >= s.leaseDurationMs) r.fail('ASYA_LEASE_RENEW_DEADLINE', 'must be shorter than ASYA_LEASE_DURATION')
  r.finish()
  return s
}

/** Content of the project's runtime-py/asya_runtime.py (the `asya-runtime` ConfigMap). */
export function loadRuntimeScript(path?: string): string {
  const candidates = path
    ? [path]
    : [join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'runtime-py', 'asya_runtime.py'), join(process.cwd(), 'runtime-py', 'asya_runtime.py')]
  for (const p of candidates) if (existsSync(p)) return readFileSync(p, 'utf8')
  throw new AsyaError('ASYA_ERR_CONFIG_MISSING', `runtime script not found (looked in ${candidates.join(', ')})`)
}

/**
 * Transport settings from env, used until/unless src/system/config.ts provides them. Names follow
 * the sidecar's (SPEC §5) so one Secret/ConfigMap feeds both.
 */
export function readControllerTransports(env: NodeJS.ProcessEnv): import('./setup.js').ControllerTransports {
  const r = new EnvReader(env)
  const defaultTransport = r.oneOf('ASYA_TRANSPORT', ['rabbitmq', 'sqs'] as const, 'rabbitmq')
  const watchNamespaces = (r.string('ASYA_WATCH_NAMESPACES') ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')
  const out: import('./setup.js').ControllerTransports = { defaultTransport, watchNamespaces }
  const rmqHost = r.string('ASYA_RABBITMQ_HOST')
  const rmqUrl = r.string('ASYA_RABBITMQ_URL')
  if (rmqHost !== undefined || rmqUrl !== undefined || defaultTransport === 'rabbitmq') {
    let host = rmqHost ?? 'localhost'
    let port = r.int('ASYA_RABBITMQ_PORT', 5672, { min: 1, max: 65535 })
    let username = r.string('ASYA_RABBITMQ_USERNAME', 'guest')
    let password = r.string('ASYA_RABBITMQ_PASSWORD', 'guest')
    let vhost = r.string('ASYA_RABBITMQ_VHOST', '/')
    let tls = false
    if (rmqUrl !== undefined) {
      try {
        const u = new URL(rmqUrl)
        host = u.hostname
        tls = u.protocol === 'amqps:'
        port = u.port ? Number(u.port) : tls ? 5671 : 5672
        if (u.username) username = decodeURIComponent(u.username)
        if (u.password) password = decodeURIComponent(u.password)
        if (u.pathname.length > 1) vhost = decodeURIComponent(u.pathname.slice(1))
      } catch {
        r.fail('ASYA_RABBITMQ_URL', 'is not a valid amqp:// URL')
      }
    }
    const secret = r.string('ASYA_RABBITMQ_CREDENTIALS_SECRET')
    out.rabbitmq = {
      host,
      port,
      vhost,
      username,
      password,
      tls,
      exchange: r.string('ASYA_RABBITMQ_EXCHANGE', 'asya'),
      managementUrl: r.string('ASYA_RABBITMQ_MANAGEMENT_URL', `http://${host}:15672`),
      ...(secret
        ? {
            credentialSecret: {
              name: secret,
              usernameKey: r.string('ASYA_RABBITMQ_CREDENTIALS_USERNAME_KEY', 'username'),
              passwordKey: r.string('ASYA_RABBITMQ_CREDENTIALS_PASSWORD_KEY', 'password'),
            },
          }
        : {}),
    }
  }
  const region = r.string('ASYA_AWS_REGION')
  if (region !== undefined || defaultTransport === 'sqs') {
    const identity = r.oneOf('ASYA_SQS_IDENTITY', ['secret', 'pod', 'operator'] as const, 'operator')
    const secret = r.string('ASYA_SQS_CREDENTIALS_SECRET')
    if (identity === 'secret' && secret === undefined) r.fail('ASYA_SQS_CREDENTIALS_SECRET', 'is required when ASYA_SQS_IDENTITY=secret')
    const endpoint = r.string('ASYA_SQS_ENDPOINT')
    out.sqs = {
      region: region ?? (r.fail('ASYA_AWS_REGION', 'is required for the sqs transport'), ''),
      ...(endpoint ? { endpoint } : {}),
      accountId: r.string('ASYA_AWS_ACCOUNT_ID', '000000000000'),
      auth:
        identity === 'secret'
          ? {
              kind: 'secret',
              secretName: secret ?? '',
              accessKeyIdKey: r.string('ASYA_SQS_CREDENTIALS_ACCESS_KEY_ID_KEY', 'AWS_ACCESS_KEY_ID'),
              secretAccessKeyKey: r.string('ASYA_SQS_CREDENTIALS_SECRET_ACCESS_KEY_KEY', 'AWS_SECRET_ACCESS_KEY'),
            }
          : { kind: identity },
    }
  }
  r.finish()
  return out
}
