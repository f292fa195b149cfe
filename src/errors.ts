/**
 * The one error catalog of Asya-TS. Every error we raise on purpose carries a stable
 * `ASYA_ERR_*` code; docs/errors.md documents each one. Codes are never renamed or reused:
 * operators grep logs and alert on them.
 */
export const ERROR_CATALOG = {
  // configuration (startup)
  ASYA_ERR_CONFIG_INVALID: 'an environment variable or configuration value is invalid',
  ASYA_ERR_CONFIG_MISSING: 'a required environment variable or configuration value is missing',
  // envelope
  ASYA_ERR_ENVELOPE_PARSE: 'message body is not a UTF-8 JSON object',
  ASYA_ERR_ENVELOPE_INVALID: 'envelope fails validation (id, route, payload)',
  ASYA_ERR_ROUTE_MISMATCH: 'route.actors[route.current] does not name this actor',
  ASYA_ERR_HOP_LIMIT: 'envelope exceeded the hop limit (its route stopped advancing)',
  ASYA_ERR_PAYLOAD_TOO_LARGE: 'message body exceeds the transport limit',
  // runtime (sidecar <-> asya_runtime.py)
  ASYA_ERR_RUNTIME_TIMEOUT: 'the runtime did not answer within the deadline',
  ASYA_ERR_RUNTIME_UNREACHABLE: 'the runtime socket could not be dialled',
  ASYA_ERR_RUNTIME_CONNECTION: 'the runtime connection broke during a request',
  ASYA_ERR_RUNTIME_BAD_RESPONSE: 'the runtime answered with a malformed frame or response',
  ASYA_ERR_RUNTIME_NOT_READY: 'the runtime did not become ready in time',
  ASYA_ERR_RUNTIME_HANDLER: 'the handler raised (processing_error) or rejected its input',
  // transports
  ASYA_ERR_TRANSPORT_CONNECTION: 'the broker connection failed or was lost',
  ASYA_ERR_TRANSPORT_CLOSED: 'the transport is closed',
  ASYA_ERR_TRANSPORT_PUBLISH: 'the broker did not confirm a publish (nack or channel error)',
  ASYA_ERR_TRANSPORT_UNROUTABLE: 'the broker returned a mandatory publish: no queue is bound for the routing key',
  ASYA_ERR_TRANSPORT_QUEUE_MISSING: 'the queue does not exist',
  ASYA_ERR_TRANSPORT_QUEUE_MISMATCH: 'an existing queue was declared with other arguments',
  ASYA_ERR_TRANSPORT_CREDENTIALS: 'the transport rejected the credentials',
  // sidecar
  ASYA_ERR_GATEWAY: 'the gateway rejected or did not answer an end-actor status report',
  ASYA_ERR_SHUTDOWN_TIMEOUT: 'the SIGTERM drain did not finish within ASYA_SHUTDOWN_TIMEOUT',
  // webhook / controller
  ASYA_ERR_ADMISSION_BAD_REQUEST: 'the AdmissionReview request is malformed',
  ASYA_ERR_ADMISSION_INVALID_ANNOTATION: 'an asya.sh/* annotation has an invalid value',
  ASYA_ERR_ADMISSION_NO_RUNTIME_CONTAINER: 'the runtime container of the pod cannot be identified',
  ASYA_ERR_TLS: 'the TLS certificate or key cannot be loaded',
  ASYA_ERR_K8S_API: 'a Kubernetes API call failed',
  ASYA_ERR_ACTOR_CONFLICT: 'two workloads in one namespace claim the same actor name',
  ASYA_ERR_NAME_TOO_LONG: 'a derived object name is longer than Kubernetes/KEDA allow',
} as const

export type AsyaErrorCode = keyof typeof ERROR_CATALOG

export interface AsyaErrorOptions {
  cause?: unknown
  /** Structured, JSON-safe context (variable names, queue names, ...). */
  details?: Record<string, unknown>
}

export class AsyaError extends Error {
  readonly code: AsyaErrorCode
  readonly details: Record<string, unknown>

  constructor(code: AsyaErrorCode, message: string, options: AsyaErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'AsyaError'
    this.code = code
    this.details = options.details ?? {}
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, details: this.details }
  }
}

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
