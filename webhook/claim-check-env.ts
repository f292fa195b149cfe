/**
 * Claim-check env of an injected sidecar (SPEC §10.4, docs/claim-check.md#in-a-cluster): a pure
 * function from the system's claim-check settings and the pod's annotations to env entries.
 *
 * Every sidecar gets the same bucket and client settings, because an actor that receives a
 * reference must be able to restore it; a pod may only lower or raise its own threshold
 * (`asya.sh/claim-check-threshold`), which shapes what *it* parks, never whether it can read.
 * Credentials travel by `secretKeyRef` only: the pod spec is readable by far more people than the
 * Secret.
 */
import type { PodAnnotations } from '../src/annotations.js'
import { ANNOTATION } from '../src/names.js'
import type { ClaimCheckInjection } from '../src/system/claim-check-injection.js'

export type EnvEntry = { name: string; value: string } | { name: string; valueFrom: { secretKeyRef: { name: string; key: string } } }

export function claimCheckEnv(settings: ClaimCheckInjection | undefined, a: PodAnnotations): { env: EnvEntry[]; warnings: string[] } {
  if (settings === undefined) {
    const warnings =
      a.claimCheckThresholdBytes !== undefined
        ? [`asya: annotation ${ANNOTATION.claimCheckThreshold} has no effect: the claim check is off in this cluster (the system has no ASYA_CLAIM_CHECK_BUCKET)`]
        : []
    return { env: [], warnings }
  }
  const env: EnvEntry[] = [{ name: 'ASYA_CLAIM_CHECK_BUCKET', value: settings.bucket }]
  if (settings.prefix !== undefined) env.push({ name: 'ASYA_CLAIM_CHECK_PREFIX', value: settings.prefix })
  const threshold = a.claimCheckThresholdBytes ?? settings.thresholdBytes
  if (threshold !== undefined) env.push({ name: 'ASYA_CLAIM_CHECK_THRESHOLD', value: String(threshold) })
  if (settings.endpoint !== undefined) env.push({ name: 'ASYA_S3_ENDPOINT', value: settings.endpoint })
  if (settings.region !== undefined) env.push({ name: 'AWS_REGION', value: settings.region })
  if (settings.forcePathStyle !== undefined) env.push({ name: 'ASYA_S3_FORCE_PATH_STYLE', value: String(settings.forcePathStyle) })
  const s = settings.credentialSecret
  if (s !== undefined) {
    env.push({ name: 'ASYA_S3_ACCESS_KEY', valueFrom: { secretKeyRef: { name: s.name, key: s.accessKeyKey } } })
    env.push({ name: 'ASYA_S3_SECRET_KEY', valueFrom: { secretKeyRef: { name: s.name, key: s.secretKeyKey } } })
  }
  return { env, warnings: [] }
}
