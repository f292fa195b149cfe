/**
 * The delivery window of SPEC §3: one message in the runtime and at most one waiting behind it,
 * *plus* the messages whose outputs are being published and confirmed. Those no longer need the
 * runtime, so they must not hold the window shut: while message n is publishing, message n+2 may
 * already be delivered to wait behind n+1. The window grows when a message leaves the runtime and
 * shrinks again *before* its ack frees the slot, so a pod with long GPU tasks never hoards more
 * than one waiting message.
 */
import type { Delivery, Subscription } from '../src/transport/transport.js'

export class PrefetchWindow {
  private current: number
  private readonly publishing = new Set<Delivery>()
  private subscription: Subscription | undefined

  /**
   * @param base deliveries allowed in the runtime + waiting (ASYA_RABBITMQ_PREFETCH, default 2)
   * @param maxPublishing bound on extra slots for publishing messages. @default 32
   */
  constructor(
    private readonly base: number,
    private readonly maxPublishing = 32,
  ) {
    this.current = base
  }

  attach(subscription: Subscription): void {
    this.subscription = subscription
  }

  /** The delivery's runtime call is over; its outputs are about to be published. */
  enter(d: Delivery): void {
    if (this.publishing.has(d)) return
    this.publishing.add(d)
    void this.apply()
  }

  /** Call right before settling a delivery (ack, retry, dead-letter, release). */
  async leave(d: Delivery): Promise<void> {
    if (!this.publishing.delete(d)) return
    await this.apply()
  }

  private apply(): Promise<void> {
    const set = this.subscription?.setPrefetch
    if (!set) return Promise.resolve()
    const n = this.base + Math.min(this.publishing.size, this.maxPublishing)
    if (n === this.current) return Promise.resolve()
    this.current = n
    return set.call(this.subscription, n).catch(() => undefined)
  }
}
