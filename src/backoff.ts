/** Exponential backoff with full jitter and a cap, shared by transports (reconnects) and the sidecar (retries). */
export interface BackoffOptions {
  /** Delay before the first retry. @default 1000 */
  initialMs?: number
  /** Upper bound of any delay. @default 60000 */
  maxMs?: number
  /** Growth factor per attempt. @default 2 */
  multiplier?: number
  /**
   * Fraction of the delay that is randomised: 0 = none, 1 = full jitter (uniform in
   * [0, delay]). Jitter keeps many pods from retrying in lockstep. @default 0.5
   */
  jitter?: number
}

/**
 * Delay before retry number `retry` (1-based). Never below 1 ms: an immediate requeue would be a
 * hot loop. `random` is injectable for tests.
 */
export function backoffDelay(retry: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = options.initialMs ?? 1000
  const max = options.maxMs ?? 60_000
  const mult = options.multiplier ?? 2
  const jitter = Math.min(1, Math.max(0, options.jitter ?? 0.5))
  const exp = Math.min(max, initial * mult ** Math.max(0, retry - 1))
  const delay = exp * (1 - jitter) + exp * jitter * random()
  return Math.max(1, Math.round(delay))
}

/** Resolves after `ms`, or rejects with the signal's reason when aborted first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
