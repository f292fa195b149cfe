/**
 * Object-storage settings from env, upstream crew's names (SPEC §10.3): read once, validated with
 * the caller's other variables so every problem is reported at start, all at once.
 */
import type { EnvReader } from '../config/env.js'

export interface S3Settings {
  /** ASYA_S3_BUCKET: bucket of end-actor results. Unset = end actors do not persist. */
  bucket?: string
  /** ASYA_S3_ENDPOINT: S3-compatible endpoint (MinIO, emulators). @default AWS S3 of the region */
  endpoint?: string
  /** AWS_REGION (or ASYA_AWS_REGION). @default 'us-east-1' */
  region: string
  /**
   * ASYA_S3_ACCESS_KEY / ASYA_S3_SECRET_KEY: static credentials. Unset = the SDK's default chain
   * (AWS_* env, web identity / EKS pod identity, instance profile).
   */
  credentials?: { accessKeyId: string; secretAccessKey: string }
  /**
   * ASYA_S3_FORCE_PATH_STYLE: `bucket` in the path instead of the host name. @default true when
   * ASYA_S3_ENDPOINT is set (MinIO and emulators), false on AWS
   */
  forcePathStyle: boolean
  /** ASYA_S3_RESULTS_PREFIX: key prefix of happy-end objects. @default 'happy-asya/' */
  resultsPrefix: string
  /** ASYA_S3_ERRORS_PREFIX: key prefix of error-end objects. @default 'error-asya/' */
  errorsPrefix: string
}

export function readS3Settings(r: EnvReader): S3Settings {
  const bucket = r.string('ASYA_S3_BUCKET')
  if (bucket !== undefined && !isBucketName(bucket)) r.fail('ASYA_S3_BUCKET', `"${bucket}" is not an S3 bucket name (3-63 chars: lowercase letters, digits, '.', '-')`)
  const endpoint = r.string('ASYA_S3_ENDPOINT')
  if (endpoint !== undefined && !/^https?:\/\/[^/]/.test(endpoint)) r.fail('ASYA_S3_ENDPOINT', 'must be an http(s):// URL')
  const accessKeyId = r.string('ASYA_S3_ACCESS_KEY')
  const secretAccessKey = r.raw('ASYA_S3_SECRET_KEY')
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    r.fail(accessKeyId === undefined ? 'ASYA_S3_ACCESS_KEY' : 'ASYA_S3_SECRET_KEY', 'ASYA_S3_ACCESS_KEY and ASYA_S3_SECRET_KEY are set together or not at all (unset = the SDK default chain / pod identity)')
  }
  const resultsPrefix = r.string('ASYA_S3_RESULTS_PREFIX', 'happy-asya/')
  const errorsPrefix = r.string('ASYA_S3_ERRORS_PREFIX', 'error-asya/')
  for (const [name, p] of [
    ['ASYA_S3_RESULTS_PREFIX', resultsPrefix],
    ['ASYA_S3_ERRORS_PREFIX', errorsPrefix],
  ] as const) {
    if (p.startsWith('/') || p.length > 512) r.fail(name, 'must not start with "/" and must be at most 512 characters')
  }
  return {
    ...(bucket !== undefined ? { bucket } : {}),
    ...(endpoint !== undefined ? { endpoint: endpoint.replace(/\/+$/, '') } : {}),
    region: r.string('AWS_REGION') ?? r.string('ASYA_AWS_REGION') ?? 'us-east-1',
    ...(accessKeyId !== undefined && secretAccessKey !== undefined ? { credentials: { accessKeyId, secretAccessKey } } : {}),
    forcePathStyle: r.bool('ASYA_S3_FORCE_PATH_STYLE', endpoint !== undefined),
    resultsPrefix,
    errorsPrefix,
  }
}

export function isBucketName(name: string): boolean {
  return /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name) && !name.includes('..')
}

export interface ClaimCheckSettings {
  /** ASYA_CLAIM_CHECK_BUCKET: bucket of parked payloads; unset = no claim check. */
  bucket: string
  /** ASYA_CLAIM_CHECK_PREFIX. @default 'asya-claims/' */
  prefix: string
  /**
   * ASYA_CLAIM_CHECK_THRESHOLD: envelopes larger than this many bytes travel by reference.
   * @default 200 KiB on SQS (limit 256 KiB with attributes), 512 KiB on NATS (default max_payload
   * 1 MiB), 1 MiB on RabbitMQ and memory
   */
  thresholdBytes: number
}

/** Default threshold per transport: comfortably under each broker's own limit. */
export const CLAIM_CHECK_DEFAULT_THRESHOLD: Record<string, number> = {
  sqs: 200 * 1024,
  nats: 512 * 1024,
  rabbitmq: 1024 * 1024,
  memory: 1024 * 1024,
}

/** Parses `1048576`, `200KiB`, `1MiB`, `512KB`, `10MB` (KB/MB = 1000-based, KiB/MiB = 1024-based). */
export function parseBytes(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$/i.exec(text.trim())
  if (!m) return undefined
  const unit = (m[2] ?? 'B').toLowerCase()
  const mult: Record<string, number> = { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3 }
  return Math.round(Number(m[1]) * (mult[unit] as number))
}

export function readClaimCheckSettings(r: EnvReader, transport: string): ClaimCheckSettings | undefined {
  const bucket = r.string('ASYA_CLAIM_CHECK_BUCKET')
  const prefix = r.string('ASYA_CLAIM_CHECK_PREFIX', 'asya-claims/')
  const rawThreshold = r.string('ASYA_CLAIM_CHECK_THRESHOLD')
  let thresholdBytes = CLAIM_CHECK_DEFAULT_THRESHOLD[transport] ?? 1024 * 1024
  if (rawThreshold !== undefined) {
    const n = parseBytes(rawThreshold)
    if (n === undefined || n < 1024) r.fail('ASYA_CLAIM_CHECK_THRESHOLD', `"${rawThreshold}" is not a size of at least 1024 bytes (e.g. 200KiB, 1MiB, 262144)`)
    else thresholdBytes = n
  }
  if (bucket === undefined) return undefined
  if (!isBucketName(bucket)) r.fail('ASYA_CLAIM_CHECK_BUCKET', `"${bucket}" is not an S3 bucket name`)
  if (prefix.startsWith('/')) r.fail('ASYA_CLAIM_CHECK_PREFIX', 'must not start with "/"')
  return { bucket, prefix, thresholdBytes }
}
