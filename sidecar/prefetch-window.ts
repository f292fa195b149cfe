/**
 * The delivery window (SPEC §3). For long handler calls (a GPU model) at most one message waits
 * behind the one in the runtime, so a pod never hoards work another replica could take. For short
 * calls that rule would make throughput hostage to the broker's confirm latency (the runtime idles
 * while message n is publishing and n+2 is not yet delivered), and hoarding costs nothing: a
 * waiting message waits milliseconds. So the window adapts to the observed runtime calls: it
 * widens after a run of fast calls and snaps back to the base at the first slow one. Changes are
 * rare (one basic.qos per regime change), never per message.
 */
import type { Subscription } from '../src/transport/transport.js'

export interface PrefetchWindowOptions {
  /** Window while calls are fast. @default 32 */
  wide?: number
  /** A call at or under this many ms counts as fast. @default 50 */
  fastMs?: number
  /** Consecutive fast calls before widening. @default 20 */
  fastStreak?: number
}

export class PrefetchWindow {
  private current: number
  private streak = 0
  private subscription: Subscription | undefined
  private readonly wide: number
  private readonly fastMs: number
  private readonly fastStreak: number

  /** @param base ASYA_RABBITMQ_PREFETCH / ASYA_PREFETCH (default 2): the window for slow calls. */
  constructor(
    private readonly base: number,
    o: PrefetchWindowOptions = {},
  ) {
    this.current = base
    this.wide = Math.max(base, o.wide ?? 32)
    this.fastMs = o.fastMs ?? 50
    this.fastStreak = o.fastStreak ?? 20
  }

  attach(subscription: Subscription): void {
    this.subscription = subscription
  }

  get size(): number {
    return this.current
  }

  /** Feed every runtime call's duration. */
  observe(runtimeMs: number): void {
    if (runtimeMs > this.fastMs) {
      this.streak = 0
      this.apply(this.base)
    } else if (++this.streak >= this.fastStreak) {
      this.apply(this.wide)
    }
  }

  private apply(n: number): void {
    if (n === this.current) return
    if (!this.subscription) return
    this.current = n
    void this.subscription.setPrefetch(n).catch(() => undefined)
  }
}
