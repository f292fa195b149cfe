/**
 * Acks of one AMQP channel, coalesced: acks requested in the same turn of the event loop (a batch's
 * envelopes, or confirms that arrived in one socket read) go out as one `basic.ack` with
 * `multiple: true` for the longest run of consecutive delivery tags that are all ready, and one
 * plain ack for each tag outside that run. `multiple` acks every unsettled tag up to it, so every
 * delivery of the channel is tracked from dispatch until it is settled in any way, and a run stops
 * at the first tag that is not ready (unsettled, retried, released): nothing is acked by accident.
 */
import type { Channel, Message } from 'amqplib'
import { AsyaError, errorMessage, errors } from '../errors.js'
import type { Logger } from '../logger.js'

export class AckCoalescer {
  /** Unsettled deliveries by tag, in delivery (ascending tag) order. */
  private readonly outstanding = new Map<number, Message>()
  private readonly ready = new Set<number>()
  private scheduled = false
  /** basic.ack frames written and deliveries they settled (for tests and logs). */
  frames = 0
  acked = 0

  private closed = false

  constructor(
    private readonly ch: Channel,
    private readonly logger?: Logger,
  ) {
    ch.once('close', () => {
      this.closed = true
    })
  }

  track(msg: Message): void {
    this.outstanding.set(msg.fields.deliveryTag, msg)
  }

  /** The delivery was settled another way (nack, or an ack sent directly). */
  forget(msg: Message): void {
    this.outstanding.delete(msg.fields.deliveryTag)
    this.ready.delete(msg.fields.deliveryTag)
  }

  /**
   * Acks `msg` at the end of this turn of the event loop. Throws at once when the channel is
   * already closed (the broker requeues the message: the caller learns it may see it again).
   */
  ack(msg: Message): void {
    if (this.closed) throw new errors.ASYA_ERR_TRANSPORT_CONNECTION('ack failed: the channel is closed (message will be redelivered)')
    this.ready.add(msg.fields.deliveryTag)
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => this.flush())
  }

  /** Writes every pending ack now (before the channel closes). */
  flush(): void {
    this.scheduled = false
    if (this.ready.size === 0) return
    try {
      let last: Message | undefined
      let run = 0
      for (const [tag, msg] of this.outstanding) {
        if (!this.ready.has(tag)) break
        last = msg
        run++
      }
      if (last !== undefined) {
        this.ch.ack(last, run > 1)
        this.frames++
        this.acked += run
        let n = 0
        for (const tag of this.outstanding.keys()) {
          if (n++ === run) break
          this.ready.delete(tag)
          this.outstanding.delete(tag)
        }
      }
      for (const tag of this.ready) {
        const msg = this.outstanding.get(tag)
        this.outstanding.delete(tag)
        if (msg === undefined) continue
        this.ch.ack(msg)
        this.frames++
        this.acked++
      }
      this.ready.clear()
    } catch (err) {
      // The channel died: the broker requeues what we did not ack; those messages come back.
      this.logger?.warn({ err: errorMessage(err), pending: this.ready.size }, 'ack failed (channel closed); the broker will redeliver')
      this.ready.clear()
      this.outstanding.clear()
    }
  }
}
