/**
 * Claim check (SPEC §10.4): an envelope larger than the threshold travels with its payload parked
 * in object storage and a reference in its place; the next sidecar restores the payload before
 * the runtime call, so handlers never see the difference.
 *
 * Wire format (docs/claim-check.md): the envelope keeps every field, `payload` becomes `null` and
 * a top-level `asya_claim` names the object:
 *   {"id": "…", "route": {…}, "payload": null,
 *    "asya_claim": {"v": 1, "bucket": "b", "key": "asya-claims/<id>/<sha256>.json", "size": 52428800, "sha256": "…"}}
 * The object holds the payload's JSON (UTF-8). Keys are content-addressed per envelope id, so a
 * retried publish rewrites the same object and an end actor finds every claim of an envelope
 * under `{prefix}{id}/`.
 */
import { createHash } from 'node:crypto'
import { errors, isAsyaError } from '../errors.js'
import { isPlainObject, type Envelope, type Json } from '../envelope.js'
import type { ObjectStore } from './object-store.js'
import { safeSegment } from './result-keys.js'

export const CLAIM_FIELD = 'asya_claim'

export interface ClaimRef {
  v: 1
  bucket: string
  key: string
  /** Bytes of the object (the payload's JSON). */
  size: number
  /** SHA-256 of the object, lowercase hex. */
  sha256: string
}

export function isClaimed(env: Record<string, unknown>): boolean {
  return env[CLAIM_FIELD] !== undefined
}

/** The reference of a claimed envelope, or a reason it is malformed. */
export function claimRef(env: Record<string, unknown>): ClaimRef | string {
  const r = env[CLAIM_FIELD]
  if (!isPlainObject(r)) return `${CLAIM_FIELD} must be an object`
  if (r.v !== 1) return `${CLAIM_FIELD}.v must be 1`
  if (typeof r.bucket !== 'string' || r.bucket === '') return `${CLAIM_FIELD}.bucket must be a non-empty string`
  if (typeof r.key !== 'string' || r.key === '') return `${CLAIM_FIELD}.key must be a non-empty string`
  if (typeof r.size !== 'number' || !Number.isInteger(r.size) || r.size < 0) return `${CLAIM_FIELD}.size must be a non-negative integer`
  if (typeof r.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(r.sha256)) return `${CLAIM_FIELD}.sha256 must be 64 lowercase hex digits`
  return { v: 1, bucket: r.bucket, key: r.key, size: r.size, sha256: r.sha256 }
}

/** The envelope without its reference (payload left as it is): for error envelopes. */
export function withoutClaim(env: Envelope): Envelope {
  const out: Envelope = { ...env }
  delete out[CLAIM_FIELD]
  return out
}

export interface ClaimCheckOptions {
  store: ObjectStore
  prefix: string
  thresholdBytes: number
}

export class ClaimCheck {
  constructor(private readonly o: ClaimCheckOptions) {}

  get thresholdBytes(): number {
    return this.o.thresholdBytes
  }

  /**
   * A body to publish: unchanged when it fits the threshold (or is not an envelope), otherwise
   * with its payload parked. Rejects with ASYA_ERR_STORAGE when storage is down: the caller's
   * publish fails and its input is retried, never acked.
   */
  async offload(body: Buffer): Promise<{ body: Buffer; ref?: ClaimRef }> {
    if (body.length <= this.o.thresholdBytes) return { body }
    let env: unknown
    try {
      env = JSON.parse(body.toString('utf8'))
    } catch {
      return { body }
    }
    if (!isPlainObject(env) || typeof env.id !== 'string' || isClaimed(env)) return { body }
    const bytes = Buffer.from(JSON.stringify(env.payload ?? null))
    const sha256 = createHash('sha256').update(bytes).digest('hex')
    const key = `${this.o.prefix}${safeSegment(env.id)}/${sha256}.json`
    await this.o.store.put(key, bytes, { metadata: { 'asya-sha256': sha256 } })
    const ref: ClaimRef = { v: 1, bucket: this.o.store.bucket, key, size: bytes.length, sha256 }
    env.payload = null
    env[CLAIM_FIELD] = ref as unknown as Json
    return { body: Buffer.from(JSON.stringify(env)), ref }
  }

  /**
   * The envelope with its payload back, verified. Rejects with ASYA_ERR_CLAIM_MISSING (no such
   * object), ASYA_ERR_CLAIM_CORRUPT (malformed reference, other bucket, size or checksum
   * mismatch, not JSON) or ASYA_ERR_STORAGE (transient: retry).
   */
  async restore(env: Envelope): Promise<{ env: Envelope; body: Buffer; ref: ClaimRef }> {
    const ref = claimRef(env)
    if (typeof ref === 'string') throw new errors.ASYA_ERR_CLAIM_CORRUPT(`claim reference: ${ref}`)
    if (ref.bucket !== this.o.store.bucket) {
      throw new errors.ASYA_ERR_CLAIM_CORRUPT(`claim reference names bucket ${ref.bucket}; this actor reads claims only from ${this.o.store.bucket}`, { details: { ref } })
    }
    let bytes: Buffer
    try {
      bytes = await this.o.store.get(ref.key)
    } catch (err) {
      if (isAsyaError(err, 'ASYA_ERR_STORAGE_NOT_FOUND')) {
        throw new errors.ASYA_ERR_CLAIM_MISSING(`claim object s3://${ref.bucket}/${ref.key} does not exist`, { cause: err, details: { ref } })
      }
      throw err
    }
    if (bytes.length !== ref.size) {
      throw new errors.ASYA_ERR_CLAIM_CORRUPT(`claim object s3://${ref.bucket}/${ref.key} has ${bytes.length} bytes, the reference says ${ref.size}`, { details: { ref } })
    }
    const sha = createHash('sha256').update(bytes).digest('hex')
    if (sha !== ref.sha256) throw new errors.ASYA_ERR_CLAIM_CORRUPT(`claim object s3://${ref.bucket}/${ref.key} fails its SHA-256 check`, { details: { ref, sha256: sha } })
    let payload: Json
    try {
      payload = JSON.parse(bytes.toString('utf8')) as Json
    } catch {
      throw new errors.ASYA_ERR_CLAIM_CORRUPT(`claim object s3://${ref.bucket}/${ref.key} is not JSON`, { details: { ref } })
    }
    const restored = withoutClaim(env)
    restored.payload = payload
    return { env: restored, body: Buffer.from(JSON.stringify(restored)), ref }
  }

  /** Deletes every claim object of envelope `id` (end actors, once it is finished). */
  async deleteFor(id: string): Promise<number> {
    const keys = await this.o.store.list(`${this.o.prefix}${safeSegment(id)}/`)
    for (const k of keys) await this.o.store.delete(k)
    return keys.length
  }

  close(): void {
    this.o.store.close()
  }
}
