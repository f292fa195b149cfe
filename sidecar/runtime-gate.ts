/**
 * The one way to call the runtime (SPEC §4, §13): `call(body)` queues the envelope and resolves
 * with that envelope's own response. The gate keeps up to ASYA_CONCURRENCY calls in flight, in
 * arrival order, and with ASYA_BATCH_SIZE > 1 gathers up to that many envelopes per call, waiting
 * at most ASYA_BATCH_WAIT after the first; a batch's response is split back per envelope, so every
 * caller settles its own delivery (routed, retried, dead-lettered and acked on its own).
 *
 * It also holds calls while the runtime is recovering. After a handler timeout the hung runtime is
 * replaced (SPEC §5): the ready file is removed so the kubelet's liveness probe (or the local
 * launcher) restarts the runtime container, and calls wait for the new ready file. Calls that were
 * in flight beside the hung one lose their connection and fail with ASYA_ERR_RUNTIME_CONNECTION
 * (the caller retries them). The sidecar itself stays up; only a runtime that does not come back
 * within ASYA_RUNTIME_READY_TIMEOUT is fatal.
 */
import { errorMessage, isAsyaError, type AsyaError } from '../src/errors.js'
import type { Logger } from '../src/logger.js'
import type { RuntimeClient, RuntimeResponse } from '../src/runtime/runtime-client.js'

export interface RuntimeGateOptions {
  /** ASYA_RUNTIME_READY_TIMEOUT. */
  readyTimeoutMs: number
  /** ASYA_RUNTIME_TIMEOUT: deadline of one runtime call (a batch is one call). */
  callTimeoutMs: number
  /** ASYA_CONCURRENCY: calls in flight at once. @default 1 */
  concurrency?: number
  /** ASYA_BATCH_SIZE: envelopes per call. @default 1 */
  batchSize?: number
  /** ASYA_BATCH_WAIT: longest wait after the first envelope to fill a batch. @default 20 */
  batchWaitMs?: number
  /** Told when a call starts, with its number of envelopes. */
  onCallStart?: (envelopes: number) => void
  /** Told when a call ends, with its duration when it succeeded (the delivery window adapts to it). */
  onCallDone?: (ms: number | undefined, envelopes: number) => void
}

export interface CallOptions {
  /** Called when this envelope's runtime call starts (it may wait for a slot or a batch first). */
  onStart?: () => void
}

interface Waiting {
  body: Buffer
  resolve: (r: RuntimeResponse) => void
  reject: (err: unknown) => void
  onStart: (() => void) | undefined
  queuedAt: number
}

/**
 * Control flow, never an outcome: the envelope never reached the runtime (drain, or shed by the
 * delivery window), so its delivery is given back to the broker without counting an attempt.
 */
export class NotStartedError extends Error {
  constructor(readonly reason: 'drain' | 'shed') {
    super(`not started: ${reason === 'drain' ? 'the sidecar is draining' : 'shed by the delivery window'}`)
    this.name = 'NotStartedError'
  }
}

/** Longest a finished call's callers wait for the next call's request to be written. */
const HAND_OVER_MAX_MS = 20

export class RuntimeGate {
  readonly concurrency: number
  readonly batchSize: number
  readonly batchWaitMs: number
  private readonly waiting: Waiting[] = []
  private running = 0
  private batchTimer: NodeJS.Timeout | undefined
  /** Finished calls whose callers are resolved once the next call's request is written (pumpThenHandOver). */
  private readonly finished: Array<() => void> = []
  private handOverTimer: NodeJS.Timeout | undefined
  /** Calls started so far. */
  private started = 0
  private closed = false
  private recovering: Promise<void> | undefined
  private ready = false
  private readonly readyTimeoutMs: number
  private readonly callTimeoutMs: number
  private readonly onCallStart: ((envelopes: number) => void) | undefined
  private readonly onCallDone: ((ms: number | undefined, envelopes: number) => void) | undefined

  constructor(
    private readonly runtime: RuntimeClient,
    o: RuntimeGateOptions,
    private readonly logger: Logger,
    /** Called once when the runtime does not come back in time. */
    private readonly onFatal: (err: unknown) => void,
  ) {
    this.readyTimeoutMs = o.readyTimeoutMs
    this.callTimeoutMs = o.callTimeoutMs
    this.concurrency = Math.max(1, o.concurrency ?? 1)
    this.batchSize = Math.max(1, o.batchSize ?? 1)
    this.batchWaitMs = Math.max(0, o.batchWaitMs ?? 20)
    this.onCallStart = o.onCallStart
    this.onCallDone = o.onCallDone
  }

  /** Envelopes that can be in the runtime at once: concurrency × batch size. */
  get slots(): number {
    return this.concurrency * this.batchSize
  }

  /** Envelopes queued here and not started yet. */
  get queued(): number {
    return this.waiting.length
  }

  /** Runtime calls in flight. */
  get inFlight(): number {
    return this.running
  }

  isReady(): boolean {
    return this.ready
  }

  /** Waits for the first ready file + test dial. Throws ASYA_ERR_RUNTIME_NOT_READY on timeout. */
  async start(signal?: AbortSignal): Promise<void> {
    await this.runtime.waitReady(this.readyTimeoutMs, signal ? { signal } : {})
    this.ready = true
    this.pump()
  }

  /**
   * Runs the envelope (raw body, as received) through the runtime. Rejects with the runtime
   * client's AsyaError (timeout, unreachable, connection, bad response) or, when the envelope never
   * started, with a {@link NotStartedError}.
   */
  call(body: Buffer, o: CallOptions = {}): Promise<RuntimeResponse> {
    if (this.closed) return Promise.reject(new NotStartedError('drain'))
    return new Promise<RuntimeResponse>((resolve, reject) => {
      this.waiting.push({ body, resolve, reject, onStart: o.onStart, queuedAt: performance.now() })
      this.pump()
    })
  }

  /**
   * Gives back the newest queued envelopes beyond `keep` (they reject as not started; the caller
   * releases them to the broker for another replica). Returns how many were shed.
   */
  shed(keep: number, reason: 'drain' | 'shed' = 'shed'): number {
    let n = 0
    while (this.waiting.length > Math.max(0, keep)) {
      const w = this.waiting.pop() as Waiting
      w.reject(new NotStartedError(reason))
      n++
    }
    return n
  }

  /** Drain: no call starts any more; queued envelopes reject as not started. */
  close(): void {
    this.closed = true
    this.handOver()
    if (this.batchTimer) clearTimeout(this.batchTimer)
    this.batchTimer = undefined
    this.shed(0, 'drain')
  }

  /**
   * Marks the runtime gone and waits for it to come back. `replace` removes the ready file first
   * (handler hung: the runtime must be restarted); without it we only wait (runtime died or
   * restarting by itself; a stale ready file fails the test dial and does not fool us).
   */
  recover(why: string, replace: boolean): void {
    if (this.recovering) return
    this.ready = false
    this.logger.warn({ why, replace }, replace ? 'replacing the runtime: ready file removed, waiting for a fresh runtime' : 'runtime lost; waiting for it to come back')
    const p = (async () => {
      if (replace) await this.runtime.markUnhealthy()
      await this.runtime.waitReady(this.readyTimeoutMs)
    })()
    this.recovering = p
    p.then(
      () => {
        this.ready = true
        this.recovering = undefined
        this.logger.info({ why }, 'runtime is back')
        this.pump()
      },
      (err: unknown) => {
        this.logger.fatal({ err: errorMessage(err), why }, 'runtime did not come back within ASYA_RUNTIME_READY_TIMEOUT')
        // Nothing queued can run any more: give it back so another replica takes it.
        this.close()
        this.onFatal(err)
      },
    )
  }

  /** Starts every call a free slot allows; a partial batch waits until its first envelope is due. */
  private pump(): void {
    while (!this.closed && this.ready && !this.recovering && this.running < this.concurrency && this.waiting.length > 0) {
      if (this.batchSize > 1 && this.waiting.length < this.batchSize) {
        const wait = (this.waiting[0] as Waiting).queuedAt + this.batchWaitMs - performance.now()
        if (wait > 0) {
          this.batchTimer ??= setTimeout(() => {
            this.batchTimer = undefined
            this.pump()
          }, Math.ceil(wait))
          return
        }
      }
      if (this.batchTimer) {
        clearTimeout(this.batchTimer)
        this.batchTimer = undefined
      }
      this.startCall(this.waiting.splice(0, this.batchSize))
    }
  }

  private startCall(batch: Waiting[]): void {
    this.running++
    this.started++
    this.onCallStart?.(batch.length)
    for (const w of batch) w.onStart?.()
    const o = { timeoutMs: this.callTimeoutMs, onSent: () => this.handOver() }
    const t0 = performance.now()
    const run: Promise<(RuntimeResponse | AsyaError)[]> =
      batch.length === 1 ? this.runtime.call((batch[0] as Waiting).body, o).then((r) => [r]) : this.runtime.callBatch(batch.map((w) => w.body), o)
    run.then(
      (responses) => {
        this.running--
        this.handOver()
        this.onCallDone?.(performance.now() - t0, batch.length)
        this.finished.push(() =>
          responses.forEach((r, i) => {
            const w = batch[i] as Waiting
            if (r instanceof Error) w.reject(r)
            else w.resolve(r)
          }),
        )
        this.pumpThenHandOver()
      },
      (err: unknown) => {
        this.running--
        this.handOver()
        this.onCallDone?.(undefined, batch.length)
        // Before anyone else may call it: a hung runtime is replaced, a lost one awaited.
        if (isAsyaError(err, 'ASYA_ERR_RUNTIME_TIMEOUT')) this.recover('handler timeout', true)
        else if (isAsyaError(err, 'ASYA_ERR_RUNTIME_UNREACHABLE') || isAsyaError(err, 'ASYA_ERR_RUNTIME_CONNECTION')) this.recover(errorMessage(err), false)
        for (const w of batch) w.reject(err)
        this.pump()
      },
    )
  }

  /**
   * Starts the next call before the finished one's callers run: settling a batch (decide, publish,
   * ack for every envelope) is a burst of work on this thread, and the new call's request is only
   * written on a later turn of the event loop (its socket connects asynchronously), so settling
   * first would leave the runtime idle for the whole burst. The finished responses are handed
   * over once that request is written (or at once when no call could start).
   */
  private pumpThenHandOver(): void {
    const before = this.started
    this.pump()
    if (this.started === before) return this.handOver()
    // A unix socket connects at once (or fails at once); this only bounds the wait if it did not.
    this.handOverTimer ??= setTimeout(() => this.handOver(), HAND_OVER_MAX_MS)
  }

  /** Resolves the callers of every finished call not handed over yet. */
  private handOver(): void {
    if (this.handOverTimer) {
      clearTimeout(this.handOverTimer)
      this.handOverTimer = undefined
    }
    if (this.finished.length === 0) return
    const done = this.finished.splice(0)
    for (const f of done) f()
  }
}
