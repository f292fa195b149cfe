import { backoffDelay, type BackoffOptions } from '../backoff.js'

export interface WorkQueueOptions {
  /** How many different keys may be processed at the same time. @default 8 */
  concurrency?: number
  /** Retry delays for a key whose handler threw. */
  backoff?: BackoffOptions
  /** Called with every handler failure (logging, metrics); the key is retried with backoff. */
  onError?: (key: string, err: unknown, retry: number) => void
}

/**
 * A keyed work queue in the spirit of client-go's workqueue: a key is queued at most once, never
 * processed twice at the same time (a key added while it runs is run again afterwards, so the last
 * change always wins), failures are retried with exponential backoff, and at most `concurrency`
 * keys run at once.
 */
export class WorkQueue {
  private readonly pending: string[] = []
  private readonly queued = new Set<string>()
  private readonly running = new Set<string>()
  private readonly dirty = new Set<string>()
  private readonly retries = new Map<string, number>()
  private readonly timers = new Map<string, NodeJS.Timeout>()
  private readonly concurrency: number
  private idleWaiters: Array<() => void> = []
  private stopped = false

  constructor(
    private readonly handler: (key: string) => Promise<void>,
    private readonly options: WorkQueueOptions = {},
  ) {
    this.concurrency = Math.max(1, options.concurrency ?? 8)
  }

  /** Queues `key` now (an earlier backoff timer for it is cancelled: new information beats waiting). */
  add(key: string): void {
    if (this.stopped) return
    const timer = this.timers.get(key)
    if (timer !== undefined) {
      clearTimeout(timer)
      this.timers.delete(key)
    }
    if (this.running.has(key)) {
      this.dirty.add(key)
      return
    }
    if (this.queued.has(key)) return
    this.queued.add(key)
    this.pending.push(key)
    this.pump()
  }

  /** Queues `key` after `ms` unless it is added sooner. */
  addAfter(key: string, ms: number): void {
    if (this.stopped || this.timers.has(key)) return
    const timer = setTimeout(() => {
      this.timers.delete(key)
      this.add(key)
    }, ms)
    timer.unref()
    this.timers.set(key, timer)
  }

  /** Number of consecutive failures of `key` (0 after a success). */
  failures(key: string): number {
    return this.retries.get(key) ?? 0
  }

  /** Keys queued or running (backoff timers not included). */
  get size(): number {
    return this.queued.size + this.running.size
  }

  /** Resolves when nothing is queued or running (keys waiting on a backoff timer do not count). */
  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve()
    return new Promise((resolve) => this.idleWaiters.push(resolve))
  }

  /** Drops queued keys and timers; running handlers finish, then `idle()` resolves. */
  async stop(): Promise<void> {
    this.stopped = true
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
    this.pending.length = 0
    this.queued.clear()
    this.dirty.clear()
    await this.idle()
  }

  private pump(): void {
    while (this.running.size < this.concurrency && this.pending.length > 0) {
      const key = this.pending.shift() as string
      this.queued.delete(key)
      this.running.add(key)
      void this.run(key)
    }
    if (this.size === 0) {
      const waiters = this.idleWaiters
      this.idleWaiters = []
      for (const w of waiters) w()
    }
  }

  private async run(key: string): Promise<void> {
    try {
      await this.handler(key)
      this.retries.delete(key)
    } catch (err) {
      const retry = (this.retries.get(key) ?? 0) + 1
      this.retries.set(key, retry)
      try {
        this.options.onError?.(key, err, retry)
      } catch {
        // a failing error hook must not wedge the queue
      }
      if (!this.dirty.has(key)) this.addAfter(key, backoffDelay(retry, this.options.backoff))
    }
    this.running.delete(key)
    if (this.dirty.delete(key) && !this.stopped) {
      // Changed while running: run again now, even after a failure (the change may be the fix).
      this.queued.add(key)
      this.pending.push(key)
    }
    this.pump()
  }
}
