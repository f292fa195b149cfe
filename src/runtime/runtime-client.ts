/**
 * Client of the runtime socket protocol (SPEC §4): one connection per request, frames of a 4-byte
 * big-endian length + UTF-8 JSON. The deadline covers connect + write + read; every socket is
 * destroyed on every path; failures map to ASYA_ERR_RUNTIME_* codes.
 */
import { isUtf8 } from 'node:buffer'
import { access, unlink } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { errorMessage, errors, isAsyaError, type AsyaError } from '../errors.js'
import { readyFilePath, socketPath } from '../names.js'

export interface RuntimeErrorDetails {
  message: string
  type: string
  traceback: string
  /** false when the handler marked the error non-retryable. */
  retryable?: boolean
  [k: string]: unknown
}

export interface RuntimeErrorItem {
  /** processing_error, msg_parsing_error or connection_error. */
  error: string
  details: RuntimeErrorDetails
}

export interface RuntimeResultEnvelope {
  payload: unknown
  route: { actors: string[]; current: number; metadata?: Record<string, unknown> }
  headers?: Record<string, unknown>
  id?: string
  parent_id?: string
  [k: string]: unknown
}

export type RuntimeResponse = { kind: 'results'; results: RuntimeResultEnvelope[] } | { kind: 'error'; error: RuntimeErrorItem }

export interface RuntimeClientOptions {
  /** Directory of `asya-runtime.sock` and `runtime-ready`. */
  socketDir: string
  /** Deadline of one call (connect + write + read). @default 300000 */
  timeoutMs?: number
}

export interface CallOptions {
  /** Deadline of this call. @default the client's timeoutMs */
  timeoutMs?: number
  signal?: AbortSignal
  /** Told once the request is written to the socket (connected, header and body handed to the kernel). */
  onSent?: () => void
}

const BATCH_OPEN = Buffer.from('{"batch":[')
const BATCH_CLOSE = Buffer.from(']}')
const COMMA = Buffer.from(',')

export class RuntimeClient {
  readonly socketPath: string
  readonly readyFile: string
  private readonly timeoutMs: number

  constructor(o: RuntimeClientOptions) {
    this.socketPath = socketPath(o.socketDir)
    this.readyFile = readyFilePath(o.socketDir)
    this.timeoutMs = o.timeoutMs ?? 300_000
  }

  /** Sends one request; resolves with the parsed response or rejects with an AsyaError. */
  call(request: Buffer | object, o: CallOptions = {}): Promise<RuntimeResponse> {
    const body = Buffer.isBuffer(request) ? request : Buffer.from(JSON.stringify(request), 'utf8')
    return this.exchange(body, o, parseResponse)
  }

  /**
   * Sends envelopes (raw JSON bodies) as one batch frame `{"batch": [...]}` (SPEC §13; our runtime
   * only). Resolves with one entry per envelope, in order: its response, or the AsyaError that
   * makes that slot unusable. A failure of the whole call (timeout, connection, a frame that is
   * not a batch of the right length) rejects.
   */
  callBatch(bodies: readonly Buffer[], o: CallOptions = {}): Promise<(RuntimeResponse | AsyaError)[]> {
    const parts: Buffer[] = [BATCH_OPEN]
    bodies.forEach((b, i) => {
      if (i > 0) parts.push(COMMA)
      parts.push(b)
    })
    parts.push(BATCH_CLOSE)
    return this.exchange(Buffer.concat(parts), o, (frame) => parseBatchResponse(frame, bodies.length))
  }

  private exchange<T>(body: Buffer, o: CallOptions, parse: (frame: Buffer) => T): Promise<T> {
    const timeoutMs = o.timeoutMs ?? this.timeoutMs
    return new Promise<T>((resolve, reject) => {
      let settled = false
      let connected = false
      const chunks: Buffer[] = []
      let received = 0
      let expected = -1
      const sock: Socket = connect(this.socketPath)
      // Errors are built lazily (`() => Error`): capturing a stack per successful call is waste.
      const finish = (err: Error | (() => Error) | undefined, value?: T): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        o.signal?.removeEventListener('abort', onAbort)
        sock.destroy()
        if (err) reject(typeof err === 'function' ? err() : err)
        else resolve(value as T)
      }
      const timer = setTimeout(() => {
        finish(new errors.ASYA_ERR_RUNTIME_TIMEOUT(timeoutMs, { details: { timeoutMs } }))
      }, timeoutMs)
      const onAbort = (): void => finish(new errors.ASYA_ERR_RUNTIME_CONNECTION('aborted by the caller'))
      if (o.signal?.aborted) return onAbort()
      o.signal?.addEventListener('abort', onAbort, { once: true })

      sock.on('connect', () => {
        connected = true
        const header = Buffer.allocUnsafe(4)
        header.writeUInt32BE(body.length, 0)
        // One writev for header + body, without copying a large body.
        sock.cork()
        sock.write(header)
        sock.write(body)
        sock.uncork()
        o.onSent?.()
      })
      sock.on('data', (chunk: Buffer) => {
        chunks.push(chunk)
        received += chunk.length
        if (expected < 0 && received >= 4) {
          // The length usually sits in the first chunk; concatenate only when it does not.
          const head = (chunks[0] as Buffer).length >= 4 ? (chunks[0] as Buffer) : Buffer.concat(chunks)
          expected = head.readUInt32BE(0)
        }
        if (expected >= 0 && received >= 4 + expected) {
          const all = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, received)
          try {
            finish(undefined, parse(all.subarray(4, 4 + expected)))
          } catch (err) {
            finish(err as Error)
          }
        }
      })
      sock.on('error', (err: NodeJS.ErrnoException) => {
        if (!connected && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'ENOTSOCK' || err.code === 'EACCES')) {
          finish(new errors.ASYA_ERR_RUNTIME_UNREACHABLE(this.socketPath, err.code, { cause: err }))
        } else {
          finish(new errors.ASYA_ERR_RUNTIME_CONNECTION(`failed: ${errorMessage(err)}`, { cause: err }))
        }
      })
      sock.on('close', () => {
        finish(() => new errors.ASYA_ERR_RUNTIME_CONNECTION(`closed by the runtime after ${received} of ${expected < 0 ? '?' : expected + 4} bytes`))
      })
    })
  }

  /** True when the ready file exists and the socket accepts a connection. */
  async probe(): Promise<boolean> {
    try {
      await access(this.readyFile)
    } catch {
      return false
    }
    return new Promise<boolean>((resolve) => {
      const sock = connect(this.socketPath)
      const done = (ok: boolean): void => {
        clearTimeout(timer)
        sock.destroy()
        resolve(ok)
      }
      const timer = setTimeout(() => done(false), 2000)
      sock.once('connect', () => done(true))
      sock.once('error', () => done(false))
    })
  }

  /**
   * Waits for the ready file and a successful test dial; a stale ready file of a crashed runtime
   * fails the dial and is not believed. Rejects with ASYA_ERR_RUNTIME_NOT_READY on timeout.
   */
  async waitReady(timeoutMs: number, o: { signal?: AbortSignal } = {}): Promise<void> {
    const end = Date.now() + timeoutMs
    for (;;) {
      if (o.signal?.aborted) throw o.signal.reason ?? new errors.ASYA_ERR_RUNTIME_NOT_READY('aborted')
      if (await this.probe()) return
      if (Date.now() >= end) {
        throw new errors.ASYA_ERR_RUNTIME_NOT_READY(`no ${this.readyFile} or ${this.socketPath} not accepting within ${timeoutMs} ms`)
      }
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  /** Removes the ready file so liveness probes restart the runtime (SPEC §5, timeout recovery). */
  async markUnhealthy(): Promise<void> {
    await unlink(this.readyFile).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err
    })
  }
}

function parseFrame(frame: Buffer): unknown {
  // isUtf8 (simdutf) validates far faster than a fatal TextDecoder pass on large frames.
  if (!isUtf8(frame)) throw new errors.ASYA_ERR_RUNTIME_BAD_RESPONSE('not valid UTF-8')
  try {
    return JSON.parse(frame.toString('utf8'))
  } catch (err) {
    throw new errors.ASYA_ERR_RUNTIME_BAD_RESPONSE(`not JSON: ${errorMessage(err)}`)
  }
}

/** Validates a response frame: a JSON array of result envelopes, or one error item. */
export function parseResponse(frame: Buffer): RuntimeResponse {
  return responseOf(parseFrame(frame))
}

/**
 * Validates a batch response frame `{"batch": [response, ...]}` of exactly `n` responses. A slot
 * that is not a valid response becomes an AsyaError for that envelope alone.
 */
export function parseBatchResponse(frame: Buffer, n: number): (RuntimeResponse | AsyaError)[] {
  const value = parseFrame(frame)
  const batch = value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>).batch : undefined
  if (!Array.isArray(batch)) {
    // A whole-request error (e.g. the runtime could not read the frame) answers every envelope alike.
    if (Array.isArray(value)) {
      const single = responseOf(value)
      if (single.kind === 'error') return Array.from({ length: n }, () => single)
    }
    throw new errors.ASYA_ERR_RUNTIME_BAD_RESPONSE('a batch request answered without a "batch" array (is ASYA_BATCH_SIZE set on the runtime container too?)')
  }
  if (batch.length !== n) throw new errors.ASYA_ERR_RUNTIME_BAD_RESPONSE(`a batch of ${n} answered with ${batch.length} responses`)
  return batch.map((slot, i) => {
    try {
      return responseOf(slot)
    } catch (err) {
      // responseOf() raises only BAD_RESPONSE; the slot number is what the message adds.
      return new errors.ASYA_ERR_RUNTIME_BAD_RESPONSE(`batch slot ${i}: ${isAsyaError(err) ? err.message.replace(/^malformed runtime response: /, '') : errorMessage(err)}`)
    }
  })
}

function responseOf(value: unknown): RuntimeResponse {
  if (!Array.isArray(value)) throw new errors.ASYA_ERR_RUNTIME_BAD_RESPONSE('not a JSON array')
  const first = value[0] as Record<string, unknown> | undefined
  if (value.length === 1 && first !== null && typeof first === 'object' && typeof first.error === 'string' && !('route' in first)) {
    const d = first.details
    if (d === null || typeof d !== 'object' || Array.isArray(d)) throw new errors.ASYA_ERR_RUNTIME_BAD_RESPONSE('error item has no details object')
    const details = d as Record<string, unknown>
    return {
      kind: 'error',
      error: {
        error: first.error,
        details: { ...details, message: String(details.message ?? ''), type: String(details.type ?? ''), traceback: String(details.traceback ?? '') },
      },
    }
  }
  for (const [i, r] of value.entries()) {
    if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new errors.ASYA_ERR_RUNTIME_BAD_RESPONSE(`result ${i} is not an object`)
    const route = (r as Record<string, unknown>).route as Record<string, unknown> | undefined
    if (route === null || typeof route !== 'object' || !Array.isArray(route.actors) || typeof route.current !== 'number') {
      throw new errors.ASYA_ERR_RUNTIME_BAD_RESPONSE(`result ${i} has no valid route`)
    }
    if (!('payload' in (r as object))) throw new errors.ASYA_ERR_RUNTIME_BAD_RESPONSE(`result ${i} has no payload`)
  }
  return { kind: 'results', results: value as RuntimeResultEnvelope[] }
}
