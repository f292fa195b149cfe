import type { CoordinationV1Api, V1Lease } from '@kubernetes/client-node'
import type { Logger } from '../logger.js'
import { apiErrorMessage, isConflict, isNotFound } from './kube.js'

export interface LeaderElectionOptions {
  /** Lease object name and namespace. */
  name: string
  namespace: string
  /** This replica's identity (pod name + random suffix). */
  identity: string
  /** How long a lease is valid without renewal. @default 15000 */
  leaseDurationMs?: number
  /** A leader that could not renew for this long steps down. @default 10000 */
  renewDeadlineMs?: number
  /** Interval between acquire/renew attempts. @default 2000 */
  retryPeriodMs?: number
  onStartedLeading: () => void
  onStoppedLeading: () => void
  logger?: Logger
}

/**
 * Leader election on a coordination.k8s.io/v1 Lease, like client-go's: every write carries the
 * resourceVersion it read (optimistic concurrency), so two replicas can never both win the same
 * round. Expiry is judged by how long the *observed* record has not changed on our own clock, so
 * clock skew between replicas does not matter.
 */
export class LeaderElector {
  private leading = false
  private timer: NodeJS.Timeout | undefined
  private stopped = true
  private observed: { key: string; at: number } | undefined
  private lastRenew = 0
  private tickRunning: Promise<void> = Promise.resolve()
  private readonly leaseMs: number
  private readonly renewDeadlineMs: number
  private readonly retryMs: number

  constructor(
    private readonly api: CoordinationV1Api,
    private readonly options: LeaderElectionOptions,
  ) {
    this.leaseMs = options.leaseDurationMs ?? 15_000
    this.renewDeadlineMs = options.renewDeadlineMs ?? Math.min(10_000, Math.floor(this.leaseMs * 2 / 3))
    this.retryMs = options.retryPeriodMs ?? 2_000
  }

  get isLeader(): boolean {
    return this.leading
  }

  start(): void {
    if (!this.stopped) return
    this.stopped = false
    this.schedule(0)
  }

  /** Stops campaigning; a leader releases the lease so another replica takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    await this.tickRunning
    if (this.leading) {
      this.setLeading(false)
      await this.release()
    }
  }

  private schedule(ms: number): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.tickRunning = this.tick().finally(() => this.schedule(this.retryMs))
    }, ms)
  }

  private async tick(): Promise<void> {
    try {
      const ok = await this.tryAcquireOrRenew()
      if (this.stopped) return
      if (ok) {
        this.lastRenew = Date.now()
        if (!this.leading) this.setLeading(true)
      } else if (this.leading) {
        this.setLeading(false)
      }
    } catch (err) {
      this.options.logger?.warn({ err: apiErrorMessage(err), lease: this.options.name }, 'lease acquire/renew failed')
      if (this.leading && Date.now() - this.lastRenew > this.renewDeadlineMs) this.setLeading(false)
    }
  }

  private setLeading(value: boolean): void {
    this.leading = value
    this.options.logger?.info({ identity: this.options.identity, lease: this.options.name }, value ? 'became leader' : 'stopped leading')
    try {
      if (value) this.options.onStartedLeading()
      else this.options.onStoppedLeading()
    } catch (err) {
      this.options.logger?.error({ err: apiErrorMessage(err) }, 'leader callback failed')
    }
  }

  /** One round: true when we hold the lease afterwards. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const { name, namespace, identity } = this.options
    const now = new Date()
    let lease: V1Lease
    try {
      lease = await this.api.readNamespacedLease({ name, namespace })
    } catch (err) {
      if (!isNotFound(err)) throw err
      try {
        await this.api.createNamespacedLease({ namespace, body: this.leaseBody(undefined, now, 0) })
        return true
      } catch (createErr) {
        if (isConflict(createErr)) return false
        throw createErr
      }
    }
    const spec = lease.spec ?? {}
    const holder = spec.holderIdentity ?? ''
    const key = `${holder}|${spec.renewTime ? new Date(spec.renewTime).getTime() : ''}|${lease.metadata?.resourceVersion ?? ''}`
    if (this.observed?.key !== key) this.observed = { key, at: Date.now() }
    const durationMs = (spec.leaseDurationSeconds ?? Math.ceil(this.leaseMs / 1000)) * 1000
    const expired = holder === '' || Date.now() - this.observed.at >= durationMs
    if (holder !== identity && !expired) return false
    const transitions = (spec.leaseTransitions ?? 0) + (holder === identity ? 0 : 1)
    const acquireTime = holder === identity && spec.acquireTime ? new Date(spec.acquireTime) : now
    const body = this.leaseBody(lease, acquireTime, transitions, now)
    try {
      await this.api.replaceNamespacedLease({ name, namespace, body })
      return true
    } catch (err) {
      if (isConflict(err)) return false
      throw err
    }
  }

  private leaseBody(current: V1Lease | undefined, acquireTime: Date, transitions: number, renewTime: Date = acquireTime): V1Lease {
    const { name, namespace, identity } = this.options
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { ...(current?.metadata ?? {}), name, namespace },
      spec: {
        holderIdentity: identity,
        leaseDurationSeconds: Math.max(1, Math.ceil(this.leaseMs / 1000)),
        acquireTime,
        renewTime,
        leaseTransitions: transitions,
      },
    }
  }

  private async release(): Promise<void> {
    const { name, namespace, identity } = this.options
    try {
      const lease = await this.api.readNamespacedLease({ name, namespace })
      if (lease.spec?.holderIdentity !== identity) return
      await this.api.replaceNamespacedLease({
        name,
        namespace,
        body: {
          ...lease,
          spec: { ...lease.spec, holderIdentity: undefined, leaseDurationSeconds: 1, renewTime: new Date() },
        },
      })
    } catch (err) {
      // Best effort: the lease expires on its own.
      this.options.logger?.warn({ err: apiErrorMessage(err) }, 'lease release failed')
    }
  }
}
