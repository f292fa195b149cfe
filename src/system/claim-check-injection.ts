/**
 * What the webhook passes to every injected sidecar so the claim check (SPEC §10.4) works in a
 * cluster: every sidecar of a pipeline must be able to park and restore payloads, so these are
 * system-level settings, read once from the system process's env (the `asya-config` ConfigMap)
 * and copied into each sidecar under the sidecar's own names (docs/claim-check.md#in-a-cluster).
 *
 * The system process never talks to S3 itself, hence its own `ASYA_CLAIM_CHECK_*` names for the
 * client settings: they cannot be mistaken for the end actors' `ASYA_S3_*`, which the end actors
 * read from the same ConfigMap through `envFrom`.
 */
import type { EnvReader } from '../config/env.js'
import { isBucketName, parseBytes } from '../storage/s3-settings.js'

export interface ClaimCheckInjection {
  /** ASYA_CLAIM_CHECK_BUCKET → the same name in every sidecar. Unset = nothing injected. */
  bucket: string
  /** ASYA_CLAIM_CHECK_PREFIX → the same name. @default unset (the sidecar's `asya-claims/`) */
  prefix?: string
  /** ASYA_CLAIM_CHECK_THRESHOLD → the same name, normalised to bytes. @default unset (the sidecar's per-transport default) */
  thresholdBytes?: number
  /** ASYA_CLAIM_CHECK_ENDPOINT → ASYA_S3_ENDPOINT (MinIO, other S3-compatible servers). @default unset (AWS S3) */
  endpoint?: string
  /** ASYA_CLAIM_CHECK_REGION → AWS_REGION. @default unset (the sidecar's ASYA_AWS_REGION, else us-east-1) */
  region?: string
  /** ASYA_CLAIM_CHECK_FORCE_PATH_STYLE → ASYA_S3_FORCE_PATH_STYLE. @default unset (true with an endpoint) */
  forcePathStyle?: boolean
  /**
   * ASYA_CLAIM_CHECK_CREDENTIALS_SECRET: a Secret in every actor namespace holding static keys,
   * injected as ASYA_S3_ACCESS_KEY / ASYA_S3_SECRET_KEY by `secretKeyRef`, never inline. Keys in it:
   * ASYA_CLAIM_CHECK_CREDENTIALS_ACCESS_KEY_KEY / _SECRET_KEY_KEY (default `ASYA_S3_ACCESS_KEY` /
   * `ASYA_S3_SECRET_KEY`, the layout of the end actors' `asya-s3` Secret). @default unset: the AWS
   * SDK default chain (pod identity / IRSA, or the SQS keys the webhook already injects)
   */
  credentialSecret?: { name: string; accessKeyKey: string; secretKeyKey: string }
}

const SECRET_KEY = /^[-._a-zA-Z0-9]+$/

export function readClaimCheckInjection(r: EnvReader): ClaimCheckInjection | undefined {
  const bucket = r.string('ASYA_CLAIM_CHECK_BUCKET')
  const prefix = r.string('ASYA_CLAIM_CHECK_PREFIX')
  const rawThreshold = r.string('ASYA_CLAIM_CHECK_THRESHOLD')
  const endpoint = r.string('ASYA_CLAIM_CHECK_ENDPOINT')
  const region = r.string('ASYA_CLAIM_CHECK_REGION')
  const pathStyleRaw = r.raw('ASYA_CLAIM_CHECK_FORCE_PATH_STYLE')
  const forcePathStyle = pathStyleRaw !== undefined ? r.bool('ASYA_CLAIM_CHECK_FORCE_PATH_STYLE', false) : undefined
  const secret = r.string('ASYA_CLAIM_CHECK_CREDENTIALS_SECRET')
  const accessKeyKey = r.string('ASYA_CLAIM_CHECK_CREDENTIALS_ACCESS_KEY_KEY', 'ASYA_S3_ACCESS_KEY')
  const secretKeyKey = r.string('ASYA_CLAIM_CHECK_CREDENTIALS_SECRET_KEY_KEY', 'ASYA_S3_SECRET_KEY')

  let thresholdBytes: number | undefined
  if (rawThreshold !== undefined) {
    thresholdBytes = parseBytes(rawThreshold)
    if (thresholdBytes === undefined || thresholdBytes < 1024) {
      r.fail('ASYA_CLAIM_CHECK_THRESHOLD', `"${rawThreshold}" is not a size of at least 1024 bytes (e.g. 200KiB, 1MiB, 262144)`)
    }
  }
  if (bucket !== undefined && !isBucketName(bucket)) r.fail('ASYA_CLAIM_CHECK_BUCKET', `"${bucket}" is not an S3 bucket name (3-63 chars: lowercase letters, digits, '.', '-')`)
  if (prefix !== undefined && prefix.startsWith('/')) r.fail('ASYA_CLAIM_CHECK_PREFIX', 'must not start with "/"')
  if (endpoint !== undefined && !/^https?:\/\/[^/]/.test(endpoint)) r.fail('ASYA_CLAIM_CHECK_ENDPOINT', 'must be an http(s):// URL')
  if (secret !== undefined && !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(secret)) r.fail('ASYA_CLAIM_CHECK_CREDENTIALS_SECRET', `"${secret}" is not a Secret name (DNS-1123 subdomain)`)
  for (const [name, key] of [
    ['ASYA_CLAIM_CHECK_CREDENTIALS_ACCESS_KEY_KEY', accessKeyKey],
    ['ASYA_CLAIM_CHECK_CREDENTIALS_SECRET_KEY_KEY', secretKeyKey],
  ] as const) {
    if (!SECRET_KEY.test(key)) r.fail(name, `"${key}" is not a Secret key (letters, digits, '-', '_', '.')`)
  }
  if (bucket === undefined) {
    // Client settings without a bucket would silently do nothing: say so at start.
    const orphan = (['ASYA_CLAIM_CHECK_PREFIX', 'ASYA_CLAIM_CHECK_THRESHOLD', 'ASYA_CLAIM_CHECK_ENDPOINT', 'ASYA_CLAIM_CHECK_REGION', 'ASYA_CLAIM_CHECK_CREDENTIALS_SECRET'] as const).filter((n) => r.raw(n) !== undefined)
    for (const n of orphan) r.fail(n, 'is set but ASYA_CLAIM_CHECK_BUCKET is not (the claim check is off without a bucket)')
    return undefined
  }
  return {
    bucket,
    ...(prefix !== undefined ? { prefix } : {}),
    ...(thresholdBytes !== undefined ? { thresholdBytes } : {}),
    ...(endpoint !== undefined ? { endpoint: endpoint.replace(/\/+$/, '') } : {}),
    ...(region !== undefined ? { region } : {}),
    ...(forcePathStyle !== undefined ? { forcePathStyle } : {}),
    ...(secret !== undefined ? { credentialSecret: { name: secret, accessKeyKey, secretKeyKey } } : {}),
  }
}
