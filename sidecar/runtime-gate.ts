/**
 * Serialises runtime calls (one request at a time, FIFO, so messages keep their order) and holds
 * them while the runtime is recovering. After a handler timeout the hung runtime is replaced
 * (SPEC §5): the ready file is removed so the kubelet's liveness probe (or the local launcher)
 * restarts the runtime container, and calls wait for the new ready file. The sidecar itself stays
 * up; only a runtime that does not come back within ASYA_RUNTIME_READY_TIMEOUT is fatal.
 */
import { errorMessage } from '../src/errors.js'
import type { Logger } from '../src/logger.js'
import type { RuntimeClient } from '../src/runtime/runtime-client.js'

export class RuntimeGate {
  private lock: Promise<void> = Promise.resolve()
  private recovering: Promise<void> | undefined
  private ready = false

  constructor(
    private readonly runtime: RuntimeClient,
    private readonly readyTimeoutMs: number,
    private readonly logger: Logger,
    /** Called once when the runtime does not come back in time. */
    private readonly onFatal: (err: unknown) => void,
  ) {}

  isReady(): boolean {
    return this.ready
  }

  /** Waits for the first ready file + test dial. Throws ASYA_ERR_RUNTIME_NOT_READY on timeout. */
  async start(signal?: AbortSignal): Promise<void> {
    await this.runtime.waitReady(this.readyTimeoutMs, signal ? { signal } : {})
    this.ready = true
  }

  /** Resolves with a release function once it is this caller's turn and the runtime is ready. */
  async acquire(): Promise<() => void> {
    const prev = this.lock
    let release!: () => void
    this.lock = new Promise<void>((r) => {
      release = r
    })
    await prev
    try {
      if (this.recovering) await this.recovering
    } catch (err) {
      release()
      throw err
    }
    return release
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
      // A replaced runtime may still be shutting down with its socket present: give the launcher
      // a moment to notice the missing ready file before we test-dial.
      await this.runtime.waitReady(this.readyTimeoutMs)
    })()
    this.recovering = p
    p.then(
      () => {
        this.ready = true
        this.recovering = undefined
        this.logger.info({ why }, 'runtime is back')
      },
      (err: unknown) => {
        this.logger.fatal({ err: errorMessage(err), why }, 'runtime did not come back within ASYA_RUNTIME_READY_TIMEOUT')
        this.onFatal(err)
      },
    )
  }
}
