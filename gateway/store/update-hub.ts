/**
 * Fans out the live updates of each envelope to the subscribers of this process.
 *
 * The stores signal that an envelope changed (memory: after the write; PostgreSQL: a LISTEN/NOTIFY
 * notification, also from other replicas), or hand over the update itself when the notification
 * carries it. On a signal the hub reads everything after the last sequence number it delivered,
 * so a lost or coalesced signal can never create a gap: per envelope, sequence numbers increase
 * in commit order (the store serialises the writes of one envelope on its row), hence "seq > N"
 * read after a commit is always a gap-free suffix.
 */
import type { StoreSubscription, UpdateListener } from './store.js'
import type { SequencedUpdate } from './types.js'

type FetchSince = (id: string, afterSeq: number) => Promise<SequencedUpdate[]>

interface Channel {
  listeners: Set<UpdateListener>
  /** Highest seq read (and delivered) for this envelope. */
  seq: number
  fetching: boolean
  /** A signal arrived while fetching: read again afterwards. */
  dirty: boolean
}

export class UpdateHub {
  private readonly channels = new Map<string, Channel>()

  constructor(
    private readonly fetchSince: FetchSince,
    private readonly onError: (err: unknown, id: string) => void = () => {},
  ) {}

  /** Envelope ids with at least one subscriber here (PostgreSQL: which notifications matter). */
  get subscribedIds(): IterableIterator<string> {
    return this.channels.keys()
  }

  get subscriberCount(): number {
    let n = 0
    for (const c of this.channels.values()) n += c.listeners.size
    return n
  }

  subscribe(id: string, listener: UpdateListener): StoreSubscription {
    let ch = this.channels.get(id)
    if (!ch) {
      ch = { listeners: new Set(), seq: 0, fetching: false, dirty: false }
      this.channels.set(id, ch)
    }
    ch.listeners.add(listener)
    const channel = ch
    return {
      close: () => {
        channel.listeners.delete(listener)
        if (channel.listeners.size === 0 && this.channels.get(id) === channel) this.channels.delete(id)
      },
    }
  }

  /** The envelope changed: deliver whatever is new to its subscribers. */
  signal(id: string): void {
    const ch = this.channels.get(id)
    if (!ch) return
    if (ch.fetching) {
      ch.dirty = true
      return
    }
    void this.drain(id, ch)
  }

  /**
   * A notification that carries the update itself. Notifications arrive in commit order, and per
   * envelope commit order is sequence order, so it is the next update unless a read is pending
   * (then the read picks it up, in order).
   */
  deliver(id: string, row: SequencedUpdate): void {
    const ch = this.channels.get(id)
    if (!ch) return
    if (ch.fetching) {
      ch.dirty = true
      return
    }
    if (row.seq <= ch.seq) return
    ch.seq = row.seq
    for (const l of [...ch.listeners]) l(row)
  }

  /** After a lost connection to the signal source: re-read every subscribed envelope. */
  signalAll(): void {
    for (const id of [...this.channels.keys()]) this.signal(id)
  }

  private async drain(id: string, ch: Channel): Promise<void> {
    ch.fetching = true
    try {
      do {
        ch.dirty = false
        let rows: SequencedUpdate[]
        try {
          rows = await this.fetchSince(id, ch.seq)
        } catch (err) {
          this.onError(err, id)
          // Try again shortly: a subscriber must not miss an update because one read failed.
          setTimeout(() => this.signal(id), 500).unref()
          return
        }
        for (const row of rows) {
          if (row.seq <= ch.seq) continue
          ch.seq = row.seq
          for (const l of [...ch.listeners]) l(row)
        }
      } while (ch.dirty && this.channels.get(id) === ch)
    } finally {
      ch.fetching = false
    }
  }
}
