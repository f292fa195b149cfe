import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export type ReconcileResult = 'ready' | 'removed' | 'skipped' | 'invalid' | 'conflict' | 'error'
export type ActorStatus = 'Ready' | 'QueueError' | 'InvalidConfig' | 'Conflict' | 'Error'

export interface ControllerMetrics {
  reconcileTotal: Counter<'result'>
  reconcileDuration: Histogram<never>
  /** Set of current per-workload statuses; the gauge is computed from it at scrape time. */
  statuses: Map<string, ActorStatus>
}

/** `asya_controller_*` metrics on the process's one registry (SPEC §8). */
export function createControllerMetrics(registry: Registry): ControllerMetrics {
  const statuses = new Map<string, ActorStatus>()
  const reconcileTotal = new Counter({
    name: 'asya_controller_reconcile_total',
    help: 'Reconciles of labelled workloads by result',
    labelNames: ['result'],
    registers: [registry],
  })
  const reconcileDuration = new Histogram({
    name: 'asya_controller_reconcile_duration_seconds',
    help: 'Duration of one workload reconcile',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  })
  new Gauge({
    name: 'asya_controller_actors',
    help: 'Labelled workloads known to the controller by status',
    labelNames: ['status'],
    registers: [registry],
    collect() {
      this.reset()
      const counts = new Map<string, number>()
      for (const s of statuses.values()) counts.set(s, (counts.get(s) ?? 0) + 1)
      for (const [status, n] of counts) this.set({ status }, n)
    },
  })
  return { reconcileTotal, reconcileDuration, statuses }
}
