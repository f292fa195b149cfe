/**
 * The delivery window (SPEC §3, §13): how many deliveries the broker may hand this pod before it
 * settles any. It is sized from the pod's capacity, `slots` = ASYA_CONCURRENCY × ASYA_BATCH_SIZE
 * envelopes in the runtime at once, and kept from hoarding: a pod holds at most what it can start
 * within one call's time, so work another replica could take does not wait here.
 *
 * - Slow calls (over `fastMs`): the base window, 2 × `slots`: what is running plus what the pod can
 *   start within one call's time (every slot frees once per call). 2 at the defaults (upstream's
 *   "one running, one waiting"); with less, calls that end together would idle their slots for a
 *   broker round trip each time. At the first slow call after a fast run, the queued envelopes
 *   beyond that are shed: released to the broker, not counted as an attempt, so a mix of fast and
 *   slow calls cannot leave a pile of slow GPU tasks waiting in one pod while others idle. A lone
 *   call of at most 4 × `fastMs` amid fast ones is taken for a hiccup (the host descheduled the
 *   runtime), not slow work: only a second one in a row, or any slower call, restores the base.
 * - Fast calls (a run of `fastStreak` at or under `fastMs`): the window widens so throughput does
 *   not hang on the broker's confirm latency, but only as far as the queued envelopes can all start
 *   within `fastMs`: slots + slots × fastMs / mean call time, rounded up to a power of two (so the
 *   window changes rarely: one basic.qos per regime change, never per message), capped at `wide`
 *   (ASYA_PREFETCH_WIDE, at least 4 × slots). Widening is at once; narrowing between two fast
 *   regimes has hysteresis (only once the queued envelopes would wait over 2 × `fastMs`, in three
 *   consecutive streaks), because on RabbitMQ every window change starts a new consumer and a mean
 *   call time wandering around a boundary under load flipped the window 32 ↔ 16 hundreds of times
 *   per run. The first slow call still restores the base at once (above).
 * - Probation (`probation: true`, every sidecar start): the window is 1 until the broker hands over
 *   a delivery it has never delivered before. After a sidecar death the messages it held come back
 *   first, flagged redelivered; taken one at a time, each is settled before the next is delivered,
 *   so a message that kills the sidecar (SPEC §11 #22) dies alone and its neighbours in the old
 *   window are not counted with it towards the delivery limit.
 */
import type { Subscription } from '../src/transport/transport.js'

export interface PrefetchWindowOptions {
  /** Largest window while calls are fast (ASYA_PREFETCH_WIDE); at least 4 × slots. @default 32 */
  wide?: number
  /** A call at or under this many ms counts as fast; also the longest an envelope should wait here. @default 50 */
  fastMs?: number
  /** Consecutive fast calls before the window is re-sized upwards. @default 20 */
  fastStreak?: number
  /** Envelopes in the runtime at once: concurrency × batch size. @default 1 */
  slots?: number
  /** Gives back queued (not started) envelopes beyond `keep`; returns how many. */
  shed?: (keep: number) => number
  /** Start at 1 until {@link PrefetchWindow.delivered} sees a first-time delivery. @default false */
  probation?: boolean
}

export class PrefetchWindow {
  private current: number
  private streak = 0
  private streakMs = 0
  private shrinkVotes = 0
  private lastSlow = false
  private subscription: Subscription | undefined
  private readonly base: number
  private readonly wide: number
  private readonly fastMs: number
  private readonly fastStreak: number
  private readonly slots: number
  private readonly shedQueued: ((keep: number) => number) | undefined
  /** Envelopes given back by the hoarding guard (for tests and logs). */
  shedTotal = 0
  private probation: boolean

  /** @param prefetch ASYA_RABBITMQ_PREFETCH / ASYA_PREFETCH (default 2): the least base window. */
  constructor(prefetch: number, o: PrefetchWindowOptions = {}) {
    this.slots = Math.max(1, o.slots ?? 1)
    this.base = Math.max(prefetch, 2 * this.slots)
    this.probation = o.probation ?? false
    this.current = this.probation ? 1 : this.base
    // A pod with many slots needs a deeper pipeline; the time bound below still applies.
    this.wide = Math.max(this.base, o.wide ?? 32, o.wide === this.base ? 0 : 4 * this.slots)
    this.fastMs = o.fastMs ?? 50
    this.fastStreak = o.fastStreak ?? 20
    this.shedQueued = o.shed
  }

  attach(subscription: Subscription): void {
    this.subscription = subscription
  }

  get size(): number {
    return this.current
  }

  /** True while the window is held at 1 after a start (see Probation above). */
  get inProbation(): boolean {
    return this.probation
  }

  /** Feed every delivery's redelivered flag: the first one never delivered before ends probation. */
  delivered(redelivered: boolean): void {
    if (!this.probation || redelivered) return
    this.probation = false
    this.apply(this.base)
  }

  /** Feed every runtime call's duration (a batch is one call). */
  observe(callMs: number): void {
    if (this.probation) return
    if (callMs > this.fastMs) {
      this.streak = 0
      this.streakMs = 0
      this.shrinkVotes = 0
      // One call of up to HICCUP × fastMs amid fast ones is a hiccup (a busy host descheduled the
      // runtime for a moment), not slow work: it does not count as fast, but only a second slow call
      // in a row, or one slower than that, restores the base and sheds.
      const hiccup = callMs <= HICCUP * this.fastMs && !this.lastSlow
      this.lastSlow = true
      if (!hiccup) this.apply(this.base)
      return
    }
    this.lastSlow = false
    this.streak++
    this.streakMs += callMs
    if (this.streak < this.fastStreak) return
    const meanMs = Math.max(this.streakMs / this.streak, 0.01)
    this.streak = 0
    this.streakMs = 0
    const target = this.sized(meanMs, 1)
    if (target >= this.current) {
      this.shrinkVotes = 0
      this.apply(target)
      return
    }
    // Hysteresis: a mean call time near a power-of-two boundary (under load it wanders by a few
    // ms) would flip the window on every streak, and each flip is a new consumer at the broker.
    // Narrow only when even a 2× longer wait would not fill the current window, 3 streaks running.
    if (this.sized(meanMs, SHRINK_SLACK) >= this.current) {
      this.shrinkVotes = 0
      return
    }
    if (++this.shrinkVotes < SHRINK_VOTES) return
    this.shrinkVotes = 0
    this.apply(target)
  }

  /** The window whose queued envelopes all start within `slack` × fastMs at this mean call time. */
  private sized(meanMs: number, slack: number): number {
    const startable = Math.ceil((this.slots * this.fastMs * slack) / meanMs)
    return Math.min(this.wide, Math.max(this.base, nextPowerOfTwo(this.slots + startable)))
  }

  private apply(n: number): void {
    if (n === this.current || !this.subscription) return
    const shrinking = n < this.current
    this.current = n
    void this.subscription.setPrefetch(n).catch(() => undefined)
    // A smaller window does not take back what the broker already delivered: shed it here.
    if (shrinking && this.shedQueued) this.shedTotal += this.shedQueued(n - this.slots)
  }
}

/** A lone call up to this many × fastMs does not end a fast regime (see observe). */
const HICCUP = 4
/** Narrowing between fast regimes waits until queued envelopes would wait over 2 × fastMs ... */
const SHRINK_SLACK = 2
/** ... in this many consecutive streaks (a slow call still restores the base at once). */
const SHRINK_VOTES = 3

function nextPowerOfTwo(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)))
}
