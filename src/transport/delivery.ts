/**
 * Delivery settlement, shared by every transport. A transport receives a message, works out how
 * often it was delivered before, and hands {@link openDelivery} its *broker verbs* (how to remove,
 * delay, dead-letter or give back one message on that broker). Everything the sidecar relies on
 * beyond the verbs lives here, once:
 *
 * - the attempt number ({@link attemptOf});
 * - the headers of a retried copy ({@link retryHeaders}) and of a dead letter ({@link deadLetterHeaders});
 * - the settle guard. A delivery is settled at most once: a second ack/retry/deadLetter/release,
 *   also one started while the first is still in progress, or one after the transport gave the
 *   message back, rejects with ASYA_ERR_DELIVERY_SETTLED and does nothing (the first settlement
 *   stands). A settlement whose broker verb fails (the retry copy or the dead letter was not
 *   stored, the ack not sent) *re-opens* the delivery: the message is still this consumer's, the
 *   caller may settle it another way, and a handler that gives up and throws gives it back;
 * - the handler contract ({@link runHandler}): a handler that throws while its delivery is still
 *   open gives the message back to the broker at once, counted as a delivery. Nothing is ever
 *   held open for good (an SQS visibility heartbeat or a NATS `working` ack would otherwise keep a
 *   message in flight forever).
 */
import { errorMessage, errors } from '../errors.js'
import type { Logger } from '../logger.js'
import { HEADER, queueName } from '../names.js'
import type { DeadLetterInfo, Delivery, DeliveryHandler, RetryInfo, TransportHeaders } from './transport.js'

/** Longest x-asya-error value a transport carries (the error envelope keeps the full text). */
export const MAX_ERROR_HEADER = 1024

/**
 * 1-based attempt of a delivery: the attempt carried by a retried copy (x-asya-attempt, written by
 * {@link retryHeaders}) plus the deliveries of this very copy the broker counted before this one.
 */
export function attemptOf(headers: TransportHeaders, earlierDeliveries: number): number {
  const carried = Number(headers[HEADER.attempt] ?? '1')
  const base = Number.isInteger(carried) && carried > 0 ? carried : 1
  return base + (Number.isInteger(earlierDeliveries) && earlierDeliveries > 0 ? earlierDeliveries : 0)
}

function withError(out: TransportHeaders, error: string | undefined): TransportHeaders {
  if (error !== undefined) out[HEADER.error] = error.slice(0, MAX_ERROR_HEADER)
  else delete out[HEADER.error]
  return out
}

/**
 * Headers of the retried copy of a delivery at `attempt`: the delivery's headers, the caller's
 * extra headers, the next attempt and this retry's reason and error. An earlier retry's error is
 * not carried over: the headers describe the latest failure only.
 */
export function retryHeaders(headers: TransportHeaders, attempt: number, info: RetryInfo): TransportHeaders {
  return withError({ ...headers, ...(info.headers ?? {}), [HEADER.attempt]: String(attempt + 1), [HEADER.reason]: info.reason }, info.error)
}

/**
 * Headers of a dead letter: the delivery's headers without the retry bookkeeping (a replay counts
 * attempts afresh), plus why, after how many attempts, from which actor, and the last error.
 */
export function deadLetterHeaders(headers: TransportHeaders, actor: string, attempt: number, info: DeadLetterInfo): TransportHeaders {
  const out: TransportHeaders = { ...headers }
  delete out[HEADER.attempt]
  out[HEADER.reason] = info.reason
  out[HEADER.attempts] = String(info.attempts ?? attempt)
  out[HEADER.actor] = actor
  return withError(out, info.error)
}

/** What a transport knows about one received message. */
export interface ReceivedMessage {
  actor: string
  body: Buffer
  headers: TransportHeaders
  attempt: number
  redelivered: boolean
}

/**
 * How one broker settles one message. The shared guard calls at most one of ack/retry/deadLetter/
 * release at a time, and `giveBack` only while no verb runs; it calls `done` exactly once, when the
 * message stops being this consumer's (settled, or given back).
 */
export interface BrokerVerbs {
  /** Removes the message for good. */
  ack(): Promise<void>
  /** Stores a copy with `headers` deliverable after `delayMs` (> 0), then removes the original. */
  retry(delayMs: number, headers: TransportHeaders, info: RetryInfo): Promise<void>
  /** Stores the body with `headers` in the actor's DLQ, then removes the original. */
  deadLetter(headers: TransportHeaders): Promise<void>
  /** Gives the message back at once without counting an attempt. */
  release(): Promise<void>
  /** Gives the message back at once as a redelivery (counted). Never throws; best effort. */
  giveBack(): void
  /** Frees the consumer slot, stops keep-alives. */
  done(): void
}

type State = 'open' | 'settling' | 'settled' | 'given_back'

/** A delivery with its guard; the transport keeps it to give back what is open when it closes. */
export interface OpenDelivery {
  readonly delivery: Delivery
  /** True until settled or given back. */
  isOpen(): boolean
  /**
   * Gives the message back (transport closing, handler threw) unless it is settled or being
   * settled. Returns whether it did.
   */
  giveBack(): boolean
}

export function openDelivery(m: ReceivedMessage, verbs: BrokerVerbs): OpenDelivery {
  let state: State = 'open'
  /** Asked to give back while a verb ran: done if the verb fails (it re-opens the delivery). */
  let giveBackAfterFailure = false
  const claim = (): void => {
    if (state !== 'open') {
      throw new errors.ASYA_ERR_DELIVERY_SETTLED(queueName(m.actor), state === 'given_back' ? 'given back to the broker' : 'settled')
    }
    state = 'settling'
  }
  const settle = async (verb: () => Promise<void>): Promise<void> => {
    claim()
    try {
      await verb()
    } catch (err) {
      state = 'open'
      if (giveBackAfterFailure) giveBack()
      throw err
    }
    state = 'settled'
    verbs.done()
  }
  const delivery: Delivery = {
    actor: m.actor,
    body: m.body,
    headers: m.headers,
    attempt: m.attempt,
    redelivered: m.redelivered,
    ack: () => settle(() => verbs.ack()),
    retry: async (delayMs: number, info: RetryInfo) => {
      // Before the guard: a refused delay leaves the delivery open.
      if (!(delayMs > 0)) throw new errors.ASYA_ERR_RETRY_DELAY_INVALID(delayMs)
      await settle(() => verbs.retry(delayMs, retryHeaders(m.headers, m.attempt, info), info))
    },
    deadLetter: (info: DeadLetterInfo) => settle(() => verbs.deadLetter(deadLetterHeaders(m.headers, m.actor, m.attempt, info))),
    release: () => settle(() => verbs.release()),
  }
  const giveBack = (): boolean => {
    if (state === 'settling') giveBackAfterFailure = true
    if (state !== 'open') return false
    state = 'given_back'
    verbs.giveBack()
    verbs.done()
    return true
  }
  return { delivery, isOpen: () => state === 'open' || state === 'settling', giveBack }
}

/**
 * Runs a consumer's handler on a delivery. A handler that throws (or rejects) while its delivery
 * is open gives the message back to the broker; one that returns keeps it (settling later is the
 * handler's business, as in the conformance suite's inbox).
 */
export function runHandler(handler: DeliveryHandler, open: OpenDelivery, logger: Logger | undefined): void {
  Promise.resolve()
    .then(() => handler(open.delivery))
    .catch((err: unknown) => {
      const gaveBack = open.giveBack()
      logger?.error({ err: errorMessage(err), actor: open.delivery.actor, returned: gaveBack }, gaveBack ? 'delivery handler threw; message given back to the broker' : 'delivery handler threw')
    })
}
