/**
 * The object store the end actors persist to and the claim check parks payloads in: one small
 * interface, one S3 implementation on @aws-sdk/client-s3 (AWS S3, MinIO, any S3-compatible
 * server). Every failure is an AsyaError: ASYA_ERR_STORAGE (transient: network, 5xx, throttling,
 * credentials) or ASYA_ERR_STORAGE_NOT_FOUND (the key or bucket does not exist).
 */
import type { S3Client } from '@aws-sdk/client-s3'
import { AsyaError, errorMessage, errors } from '../errors.js'

/**
 * The AWS SDK, loaded at the first storage call (a RabbitMQ sidecar that is not an end actor and
 * has no claim check never loads it: it costs start-up time and ~10 MB of heap).
 */
type S3Sdk = typeof import('@aws-sdk/client-s3')
let sdk: Promise<S3Sdk> | undefined
const loadSdk = (): Promise<S3Sdk> => (sdk ??= import('@aws-sdk/client-s3'))

/**
 * Bodies above this go up as a multipart upload in parts of this size (S3's minimum part is
 * 5 MiB; many S3-compatible servers cap one request body near 10 MiB).
 */
export const MULTIPART_PART_BYTES = 8 * 1024 * 1024
import type { S3Settings } from './s3-settings.js'

export interface PutOptions {
  /** @default 'application/json' */
  contentType?: string
  /** User metadata (x-amz-meta-*). */
  metadata?: Record<string, string>
}

export interface ObjectStore {
  readonly bucket: string
  /** Stores `body` under `key` (overwrites). Resolves once the store confirmed the write. */
  put(key: string, body: Buffer, options?: PutOptions): Promise<void>
  /** The object's bytes. Rejects with ASYA_ERR_STORAGE_NOT_FOUND when there is no such key. */
  get(key: string): Promise<Buffer>
  /** Deletes `key`; deleting a missing key is not an error. */
  delete(key: string): Promise<void>
  /** Keys under `prefix` (every page). */
  list(prefix: string): Promise<string[]>
  /** Checks that the bucket is reachable with these credentials. */
  check(): Promise<void>
  close(): void
}

export interface S3ObjectStoreOptions extends Pick<S3Settings, 'endpoint' | 'region' | 'credentials' | 'forcePathStyle'> {
  bucket: string
  /** Per-request deadline (each SDK attempt). @default 30000 */
  requestTimeoutMs?: number
  /** SDK attempts per call (its own quick retries, before the sidecar's backoff). @default 3 */
  maxAttempts?: number
}

export class S3ObjectStore implements ObjectStore {
  readonly bucket: string
  private client: Promise<{ sdk: S3Sdk; client: S3Client }> | undefined
  private created: S3Client | undefined
  private closed = false

  constructor(private readonly o: S3ObjectStoreOptions) {
    this.bucket = o.bucket
  }

  /** The SDK and this store's client, created at the first call. */
  private s3(): Promise<{ sdk: S3Sdk; client: S3Client }> {
    this.client ??= loadSdk().then((m) => {
      const client = this.newClient(m)
      // close() before the SDK arrived: no sockets to keep.
      if (this.closed) client.destroy()
      else this.created = client
      return { sdk: m, client }
    })
    return this.client
  }

  private newClient(m: S3Sdk): S3Client {
    const o = this.o
    return new m.S3Client({
      region: o.region,
      ...(o.endpoint !== undefined ? { endpoint: o.endpoint } : {}),
      ...(o.credentials ? { credentials: o.credentials } : {}),
      forcePathStyle: o.forcePathStyle ?? o.endpoint !== undefined,
      maxAttempts: o.maxAttempts ?? 3,
      requestHandler: { requestTimeout: o.requestTimeoutMs ?? 30_000, connectionTimeout: 5_000 },
      // A checksum per PUT is computed by us where it matters (claim check); the SDK's default
      // CRC32 trailer makes some S3-compatible servers reject streaming bodies.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    })
  }

  async put(key: string, body: Buffer, options: PutOptions = {}): Promise<void> {
    let m: S3Sdk | undefined
    try {
      const { sdk, client } = await this.s3()
      m = sdk
      if (body.length > MULTIPART_PART_BYTES) {
        const { Upload } = await import('@aws-sdk/lib-storage')
        const upload = new Upload({
          client,
          params: { Bucket: this.bucket, Key: key, Body: body, ContentType: options.contentType ?? 'application/json', ...(options.metadata ? { Metadata: options.metadata } : {}) },
          partSize: MULTIPART_PART_BYTES,
          queueSize: 2,
          // A failed part aborts the whole upload: no orphaned parts billed in the bucket.
          leavePartsOnError: false,
        })
        await upload.done()
        return
      }
      await client.send(
        new sdk.PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentLength: body.length,
          ContentType: options.contentType ?? 'application/json',
          ...(options.metadata ? { Metadata: options.metadata } : {}),
        }),
      )
    } catch (err) {
      throw storageError(m, 'put', this.bucket, key, err)
    }
  }

  async get(key: string): Promise<Buffer> {
    let m: S3Sdk | undefined
    try {
      const { sdk, client } = await this.s3()
      m = sdk
      const res = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key: key }))
      if (!res.Body) throw new errors.ASYA_ERR_STORAGE(`s3://${this.bucket}/${key}: empty response body`)
      return Buffer.from(await res.Body.transformToByteArray())
    } catch (err) {
      throw storageError(m, 'get', this.bucket, key, err)
    }
  }

  async delete(key: string): Promise<void> {
    let m: S3Sdk | undefined
    try {
      const { sdk, client } = await this.s3()
      m = sdk
      await client.send(new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: key }))
    } catch (err) {
      const e = storageError(m, 'delete', this.bucket, key, err)
      if (e.code === 'ASYA_ERR_STORAGE_NOT_FOUND' && e.details.missing === 'key') return
      throw e
    }
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = []
    let token: string | undefined
    let m: S3Sdk | undefined
    try {
      const { sdk, client } = await this.s3()
      m = sdk
      do {
        const res = await client.send(new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }))
        for (const o of res.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key)
        token = res.IsTruncated ? res.NextContinuationToken : undefined
      } while (token)
    } catch (err) {
      throw storageError(m, 'list', this.bucket, prefix, err)
    }
    return keys
  }

  async check(): Promise<void> {
    let m: S3Sdk | undefined
    try {
      const { sdk, client } = await this.s3()
      m = sdk
      await client.send(new sdk.HeadBucketCommand({ Bucket: this.bucket }))
    } catch (err) {
      throw storageError(m, 'head_bucket', this.bucket, '', err)
    }
  }

  close(): void {
    this.closed = true
    this.created?.destroy()
    this.created = undefined
  }
}

function storageError(m: S3Sdk | undefined, op: string, bucket: string, key: string, err: unknown): AsyaError {
  if (err instanceof AsyaError) return err
  const where = `s3://${bucket}/${key}`
  if (m !== undefined && err instanceof m.S3ServiceException) {
    const status = err.$metadata.httpStatusCode
    const name = err.name
    if (name === 'NoSuchBucket' || (op === 'head_bucket' && status === 404)) {
      return new errors.ASYA_ERR_STORAGE_NOT_FOUND(`${op} ${where}: bucket ${bucket} does not exist`, { cause: err, details: { op, bucket, key, missing: 'bucket', status } })
    }
    if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) {
      return new errors.ASYA_ERR_STORAGE_NOT_FOUND(`${op} ${where}: no such key`, { cause: err, details: { op, bucket, key, missing: 'key', status } })
    }
    return new errors.ASYA_ERR_STORAGE(`${op} ${where} failed: ${name}${status ? ` (HTTP ${status})` : ''}: ${err.message}`, { cause: err, details: { op, bucket, key, status, name } })
  }
  return new errors.ASYA_ERR_STORAGE(`${op} ${where} failed: ${errorMessage(err)}`, { cause: err, details: { op, bucket, key } })
}
