import { randomBytes } from 'node:crypto'
import type { CoreV1Api } from '@kubernetes/client-node'
import type { Logger } from '../logger.js'
import { MERGE_PATCH, apiErrorMessage, isNotFound } from './kube.js'
import type { WorkloadKind } from './keda.js'


export interface EventTarget {
  kind: WorkloadKind
  namespace: string
  name: string
  uid: string
  resourceVersion?: string
}

export type EventType = 'Normal' | 'Warning'

const COMPONENT = 'asya-controller'
/** Repeats of the same event within this window bump `count` instead of creating a new Event. */
const AGGREGATE_MS = 10 * 60_000

/**
 * core/v1 Events on workloads. Identical events (same object, reason, message) are aggregated
 * into one Event with a growing `count`, as kubelet/client-go do, so a retry loop cannot flood etcd.
 * Event failures are logged, never fatal: reporting must not block wiring.
 */
export class EventRecorder {
  // `created` is set before the create call returns, so two records of one event racing each
  // other (a resync beside a watch event) aggregate instead of creating two Events.
  private readonly recent = new Map<string, { name: string; count: number; at: number; created: Promise<boolean> }>()

  constructor(
    private readonly core: CoreV1Api,
    private readonly logger: Logger,
    private readonly instance = 'asya-controller',
  ) {}

  async record(target: EventTarget, type: EventType, reason: string, message: string): Promise<void> {
    const key = `${target.uid}|${reason}|${message}`
    const now = new Date()
    const prev = this.recent.get(key)
    try {
      if (prev && now.getTime() - prev.at < AGGREGATE_MS && (await prev.created)) {
        prev.count++
        prev.at = now.getTime()
        await this.core.patchNamespacedEvent(
          { name: prev.name, namespace: target.namespace, body: { count: prev.count, lastTimestamp: now.toISOString() } },
          MERGE_PATCH,
        )
        return
      }
      const name = `${target.name.slice(0, 200)}.${randomBytes(8).toString('hex')}`
      let created!: (ok: boolean) => void
      const entry = { name, count: 1, at: now.getTime(), created: new Promise<boolean>((r) => (created = r)) }
      this.recent.set(key, entry)
      await this.core
        .createNamespacedEvent({
          namespace: target.namespace,
          body: {
            apiVersion: 'v1',
            kind: 'Event',
            metadata: { name, namespace: target.namespace },
            involvedObject: {
              apiVersion: 'apps/v1',
              kind: target.kind,
              namespace: target.namespace,
              name: target.name,
              uid: target.uid,
              ...(target.resourceVersion ? { resourceVersion: target.resourceVersion } : {}),
            },
            reason,
            message: message.slice(0, 1024),
            type,
            count: 1,
            firstTimestamp: now,
            lastTimestamp: now,
            source: { component: COMPONENT },
            reportingComponent: COMPONENT,
            reportingInstance: this.instance,
          },
        })
        .then(
          () => created(true),
          (err: unknown) => {
            created(false)
            if (this.recent.get(key) === entry) this.recent.delete(key) // not created: the next one tries anew
            throw err
          },
        )
      this.prune(now.getTime())
    } catch (err) {
      if (prev && isNotFound(err) && this.recent.get(key) === prev) this.recent.delete(key) // expired Event: next one is created anew
      this.logger.warn({ err: apiErrorMessage(err), reason, workload: `${target.namespace}/${target.name}` }, 'could not record event')
    }
  }

  private prune(now: number): void {
    if (this.recent.size < 5000) return
    for (const [k, v] of this.recent) if (now - v.at > AGGREGATE_MS) this.recent.delete(k)
  }
}
