/**
 * The one error catalog of Asya-TS (the pattern of fastify's `lib/errors.js`). Every error we
 * raise on purpose is built by one constructor of {@link errors}, which fixes its stable
 * `ASYA_ERR_*` code and its message template; docs/errors.md documents each code, and a test
 * checks the two agree in both directions. Codes are never renamed or reused: operators grep logs
 * and alert on them.
 *
 *   throw new errors.ASYA_ERR_TRANSPORT_QUEUE_MISSING(`queue ${queueName(actor)}`, { cause: err })
 *
 * A template's `%s` are filled in order by the constructor's arguments; an options object
 * (cause, details) may follow them.
 */

interface ErrorSpec {
  /** One line: what went wrong. Also the `meaning` column of docs/errors.md. */
  readonly meaning: string
  /** The message; each `%s` is one constructor argument. */
  readonly message: string
}

const SPECS = {
  // configuration (startup)
  ASYA_ERR_CONFIG_INVALID: { meaning: 'an environment variable or configuration value is invalid', message: 'invalid configuration: %s' },
  ASYA_ERR_CONFIG_MISSING: { meaning: 'a required environment variable or configuration value is missing', message: 'missing %s (%s)' },
  // envelope
  ASYA_ERR_ENVELOPE_PARSE: { meaning: 'message body is not a UTF-8 JSON object', message: 'body is not UTF-8 JSON: %s' },
  ASYA_ERR_ENVELOPE_INVALID: { meaning: 'envelope fails validation (id, route, payload)', message: 'invalid envelope: %s' },
  ASYA_ERR_PAYLOAD_TOO_LARGE: {
    meaning: 'message body exceeds the transport limit',
    message: 'message of %s bytes exceeds the %s limit of %s; it is never truncated',
  },
  // runtime (sidecar <-> asya_runtime.py)
  ASYA_ERR_RUNTIME_TIMEOUT: { meaning: 'the runtime did not answer within the deadline', message: 'runtime did not answer within %s ms' },
  ASYA_ERR_RUNTIME_UNREACHABLE: { meaning: 'the runtime socket could not be dialled', message: 'cannot dial the runtime at %s: %s' },
  ASYA_ERR_RUNTIME_CONNECTION: { meaning: 'the runtime connection broke during a request', message: 'runtime connection %s' },
  ASYA_ERR_RUNTIME_BAD_RESPONSE: { meaning: 'the runtime answered with a malformed frame or response', message: 'malformed runtime response: %s' },
  ASYA_ERR_RUNTIME_NOT_READY: { meaning: 'the runtime did not become ready in time', message: 'runtime not ready: %s' },
  // transports
  ASYA_ERR_TRANSPORT_CONNECTION: { meaning: 'the broker connection failed or was lost', message: '%s' },
  ASYA_ERR_TRANSPORT_CLOSED: { meaning: 'the transport is closed', message: '%s is closed' },
  ASYA_ERR_TRANSPORT_PUBLISH: { meaning: 'the broker did not confirm a publish (nack or channel error)', message: '%s' },
  ASYA_ERR_TRANSPORT_UNROUTABLE: {
    meaning: 'the broker returned a mandatory publish: no queue is bound for the routing key',
    message: 'no queue %s (%s)',
  },
  ASYA_ERR_TRANSPORT_QUEUE_MISSING: { meaning: 'the queue does not exist', message: 'no %s' },
  ASYA_ERR_TRANSPORT_QUEUE_MISMATCH: {
    meaning: 'an existing queue was declared with other arguments',
    message: '%s exists with other arguments; it is left as is (deleting it would lose messages): %s',
  },
  ASYA_ERR_TRANSPORT_QUEUE_NOT_EMPTY: {
    meaning: 'queue-retention delete: the queue still holds messages (or has consumers), kept and retried later',
    message: '%s',
  },
  ASYA_ERR_TRANSPORT_CREDENTIALS: { meaning: 'the transport rejected the credentials', message: '%s rejected the credentials: %s' },
  ASYA_ERR_DELIVERY_SETTLED: {
    meaning: 'a delivery was settled twice (ack, retry, dead-letter or release)',
    message: 'delivery from %s was already %s',
  },
  ASYA_ERR_RETRY_DELAY_INVALID: { meaning: 'a retry was asked without a positive delay (never an immediate requeue)', message: 'retry delay must be > 0 ms, got %s' },
  // object storage (end actors, claim check)
  ASYA_ERR_STORAGE: { meaning: 'an object-storage call failed (network, credentials, throttling, server error)', message: '%s' },
  ASYA_ERR_STORAGE_NOT_FOUND: { meaning: 'the object or bucket does not exist', message: '%s' },
  ASYA_ERR_CLAIM_MISSING: { meaning: 'a claim-check reference points at an object that does not exist', message: '%s' },
  ASYA_ERR_CLAIM_CORRUPT: { meaning: 'a claim-check reference or its object fails validation (size or checksum)', message: '%s' },
  // gateway
  ASYA_ERR_TOOL_CONFIG_INVALID: { meaning: 'the tool config (ASYA_CONFIG_PATH) has an unknown key, a bad value or a missing route', message: '%s' },
  ASYA_ERR_TOOL_NOT_FOUND: { meaning: 'a tool call names a tool the gateway does not have', message: '%s' },
  ASYA_ERR_ENVELOPE_NOT_FOUND: { meaning: 'the gateway has no envelope with this id', message: '%s' },
  ASYA_ERR_STORE: { meaning: 'the envelope store (PostgreSQL) failed or is unreachable', message: '%s' },
  ASYA_ERR_UNAUTHORIZED: { meaning: 'a gateway request carries no valid credential (bearer token, API key or JWT)', message: '%s' },
  ASYA_ERR_FORBIDDEN: { meaning: 'an authenticated gateway caller is not allowed this tool or endpoint', message: '%s' },
  ASYA_ERR_LIMIT_EXCEEDED: { meaning: 'a gateway request exceeds a configured limit (body, arguments, rate, SSE streams, request time)', message: '%s' },
  ASYA_ERR_AUTH_UNAVAILABLE: { meaning: "the gateway cannot verify JWTs right now (the issuer's JWKS is unreachable or invalid)", message: '%s' },
  ASYA_ERR_STORE_MIGRATION: { meaning: 'the envelope store schema could not be migrated at start', message: '%s' },
  // sidecar
  ASYA_ERR_GATEWAY: { meaning: 'the gateway rejected or did not answer a status or progress report', message: 'gateway answered %s' },
  ASYA_ERR_SHUTDOWN_TIMEOUT: { meaning: 'the SIGTERM drain did not finish within ASYA_SHUTDOWN_TIMEOUT', message: 'drain did not finish within %s ms' },
  // webhook / controller
  ASYA_ERR_ADMISSION_BAD_REQUEST: { meaning: 'the AdmissionReview request is malformed', message: '%s' },
  ASYA_ERR_ADMISSION_INVALID_ANNOTATION: { meaning: 'an asya.sh/* annotation has an invalid value', message: '%s' },
  ASYA_ERR_ADMISSION_NO_RUNTIME_CONTAINER: { meaning: 'the runtime container of the pod cannot be identified', message: '%s' },
  ASYA_ERR_ADMISSION_RECOVERY_OFF: {
    meaning: "the runtime container's own liveness probe cannot carry the ready-file check: timeout recovery is off for the pod",
    message: '%s',
  },
  ASYA_ERR_TLS: { meaning: 'the TLS certificate or key cannot be loaded', message: '%s' },
  ASYA_ERR_K8S_API: { meaning: 'a Kubernetes API call failed', message: '%s' },
  ASYA_ERR_ACTOR_CONFLICT: {
    meaning: 'two workloads in one namespace claim the same actor name',
    message: 'actor "%s" is already served by %s in namespace %s; this workload is not wired',
  },
  ASYA_ERR_NAME_TOO_LONG: { meaning: 'a derived object name is longer than Kubernetes/KEDA allow', message: '%s' },
} as const satisfies Record<string, ErrorSpec>

export type AsyaErrorCode = keyof typeof SPECS

export interface AsyaErrorOptions {
  cause?: unknown
  /** Structured, JSON-safe context (variable names, queue names, ...). */
  details?: Record<string, unknown>
}

/** Base of every catalog error: `instanceof AsyaError` and {@link isAsyaError} recognise them all. */
export class AsyaError extends Error {
  readonly code: AsyaErrorCode
  readonly details: Record<string, unknown>

  protected constructor(code: AsyaErrorCode, message: string, options: AsyaErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'AsyaError'
    this.code = code
    this.details = options.details ?? {}
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, details: this.details }
  }
}

type TemplateArg = string | number
/** One argument per `%s` of the template, then optional options. */
type TemplateArgs<S extends string, A extends TemplateArg[] = []> = S extends `${string}%s${infer Rest}` ? TemplateArgs<Rest, [...A, TemplateArg]> : A

export interface AsyaErrorConstructor<C extends AsyaErrorCode, T extends string> {
  new (...args: [...TemplateArgs<T>, AsyaErrorOptions?]): AsyaError & { readonly code: C }
  readonly code: C
  readonly meaning: string
  readonly template: T
}

function placeholders(template: string): number {
  return template.split('%s').length - 1
}

function createError<C extends AsyaErrorCode, T extends string>(code: C, spec: { meaning: string; message: T }): AsyaErrorConstructor<C, T> {
  const n = placeholders(spec.message)
  class CatalogError extends AsyaError {
    static readonly code = code
    static readonly meaning = spec.meaning
    static readonly template = spec.message
    constructor(...args: unknown[]) {
      let i = 0
      const message = spec.message.replace(/%s/g, () => String(args[i++]))
      super(code, message, (args[n] as AsyaErrorOptions | undefined) ?? {})
    }
  }
  Object.defineProperty(CatalogError, 'name', { value: code })
  return CatalogError as unknown as AsyaErrorConstructor<C, T>
}

type Catalog = { readonly [C in AsyaErrorCode]: AsyaErrorConstructor<C, (typeof SPECS)[C]['message']> }

/** The catalog: one constructor per code. */
export const errors: Catalog = Object.fromEntries(
  (Object.keys(SPECS) as AsyaErrorCode[]).map((code) => [code, createError(code, SPECS[code])]),
) as unknown as Catalog

export function isAsyaError(err: unknown, code?: AsyaErrorCode): err is AsyaError {
  return err instanceof AsyaError && (code === undefined || err.code === code)
}

/** Best-effort message of an unknown thrown value, for logs and error envelopes. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message
  if (typeof err === 'string') return err
  try {
    return JSON.stringify(err)
  } catch {
    return String(err)
  }
}
