/**
 * Concurrent callers of `run()` share one pass of `fn`; a call after that pass settled starts a new
 * one. For work that must never run twice at once: a transport's connect loop, a certificate
 * re-read, a CA sync.
 */
export class SingleFlight {
  private current: Promise<void> | undefined

  constructor(private readonly fn: () => Promise<void>) {}

  run(): Promise<void> {
    this.current ??= this.fn().finally(() => {
      this.current = undefined
    })
    return this.current
  }
}
