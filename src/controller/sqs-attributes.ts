/**
 * What the controller may change on an SQS queue that already exists (created by a sidecar
 * before the controller, by hand, or by an older configuration). Pure: current attributes and
 * desired attributes in, the SetQueueAttributes to send and what must be left alone out.
 *
 * Safe, so applied: a missing or differently counted redrive policy to our own DLQ, the visibility
 * timeout (messages in flight keep the visibility they were received with; sidecars extend it on
 * their heartbeat), a longer retention, any other settable attribute.
 * Not safe, so reported and left as is: a redrive policy to another queue (dead letters would
 * start going elsewhere than where the operator looks), a shorter retention (SQS would delete
 * messages older than the new period), FifoQueue (immutable).
 */

export interface AttributePlan {
  /** Attributes to send with SetQueueAttributes (empty: nothing to change). */
  set: Record<string, string>
  /** One line per attribute that differs and is left as is, saying why. */
  cannot: string[]
}

/** SQS limits on VisibilityTimeout: 0–43,200 s. */
const MAX_VISIBILITY_SECONDS = 43_200

/**
 * The visibility timeout an actor's queue is created with: twice the processing timeout
 * (SPEC §3), at least 30 s, at most SQS's 12 h. Same rule as the sidecar's default.
 */
export function sqsVisibilityFor(timeoutSeconds: number): number {
  return Math.min(MAX_VISIBILITY_SECONDS, Math.max(30, Math.ceil(2 * timeoutSeconds)))
}

interface Redrive {
  deadLetterTargetArn?: string
  maxReceiveCount?: number
}

function parseRedrive(text: string | undefined): Redrive | undefined {
  if (text === undefined || text === '') return undefined
  try {
    const v = JSON.parse(text) as { deadLetterTargetArn?: unknown; maxReceiveCount?: unknown }
    return {
      ...(typeof v.deadLetterTargetArn === 'string' ? { deadLetterTargetArn: v.deadLetterTargetArn } : {}),
      ...(v.maxReceiveCount !== undefined ? { maxReceiveCount: Number(v.maxReceiveCount) } : {}),
    }
  } catch {
    return {}
  }
}

function same(a: string | undefined, b: string): boolean {
  if (a === undefined) return false
  if (a === b) return true
  const x = Number(a)
  const y = Number(b)
  return a.trim() !== '' && b.trim() !== '' && Number.isFinite(x) && x === y
}

export function planSqsAttributes(current: Record<string, string | undefined>, desired: Record<string, string>): AttributePlan {
  const set: Record<string, string> = {}
  const cannot: string[] = []
  for (const [key, want] of Object.entries(desired)) {
    const have = current[key]
    if (key === 'RedrivePolicy') {
      const h = parseRedrive(have)
      const w = parseRedrive(want) ?? {}
      if (h === undefined || h.deadLetterTargetArn === undefined) set[key] = want
      else if (h.deadLetterTargetArn !== w.deadLetterTargetArn) {
        cannot.push(`RedrivePolicy sends dead letters to ${h.deadLetterTargetArn}, not ${w.deadLetterTargetArn ?? '?'}; left as is (changing it would move dead letters away from where they are looked for)`)
      } else if (h.maxReceiveCount !== w.maxReceiveCount) set[key] = want
      continue
    }
    if (same(have, want)) continue
    if (key === 'FifoQueue') {
      cannot.push(`FifoQueue is ${have ?? 'false'}, wanted ${want}; SQS cannot change it on an existing queue`)
    } else if (key === 'MessageRetentionPeriod' && have !== undefined && Number(have) > Number(want)) {
      cannot.push(`MessageRetentionPeriod is ${have} s, wanted ${want} s; left as is (shortening it deletes messages older than the new period)`)
    } else set[key] = want
  }
  return { set, cannot }
}
