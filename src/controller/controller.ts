import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { makeInformer, type Informer, type KubeConfig, type ObjectCache, type V1Deployment, type V1StatefulSet } from '@kubernetes/client-node'
import type { Registry } from 'prom-client'
import { backoffDelay } from '../backoff.js'
import { errorMessage, isAsyaError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { ScalerConfig, WorkloadKind } from './keda.js'
import { makeKubeApis, apiErrorMessage, type KubeApis } from './kube.js'
import { LeaderElector } from './leader-election.js'
import { createControllerMetrics, type ControllerMetrics } from './metrics.js'
import type { QueueProvisioner } from './queues.js'
import { Reconciler } from './reconciler.js'
import { EventRecorder } from './reporter.js'
import { ANNOTATION, ANNOTATION_PREFIX, END_ACTORS, type ClusterTransportName } from '../names.js'
import { WorkQueue } from './work-queue.js'
import { templateActor, workloadKey, type Workload, type WorkloadStore } from './workload.js'

export interface ControllerOptions {
  kubeConfig: KubeConfig
  /** Namespaces to watch; empty = all namespaces. */
  namespaces: readonly string[]
  /** Periodic full resync (re-creates vanished queues, repairs drift). @default 300000 */
  resyncMs?: number
  /** Workloads reconciled in parallel. @default 8 */
  concurrency?: number
  defaultTransport: ClusterTransportName
  /**
   * ASYA_SHARED_ACTOR_NAMES: workloads in different namespaces may serve one actor name (and so
   * one queue). Off, the second one is a Conflict like two in one namespace. @default false
   */
  shareActorsAcrossNamespaces?: boolean
  queues: Partial<Record<ClusterTransportName, QueueProvisioner>>
  scaler: (transport: ClusterTransportName, actor: string, namespace: string) => ScalerConfig
  runtimeScript: string
  /** Lease-based leader election; undefined = this replica always leads (single replica, tests). */
  leaderElection?: {
    namespace: string
    name?: string
    identity?: string
    leaseDurationMs?: number
    renewDeadlineMs?: number
    retryPeriodMs?: number
  }
  /** Retry delays of a failing workload. */
  backoff?: { initialMs?: number; maxMs?: number }
  registry: Registry
  logger: Logger
  /** Called when leadership changes (main.ts reports it in /readyz-like diagnostics). */
  onLeadershipChange?: (leading: boolean) => void
  /**
   * Actors whose queues (and DLQs) exist on every configured transport whether or not a workload
   * serves them yet, so finished envelopes are never unroutable. @default ['happy-end', 'error-end']
   */
  endActors?: readonly string[]
  /** Namespace recorded on the end actors' queues (SQS tags). @default 'asya-system' */
  systemNamespace?: string
}

type WorkloadInformer = Informer<Workload> & ObjectCache<Workload>

/**
 * The slim controller: watches Deployments and StatefulSets, and while this replica leads,
 * reconciles every workload whose pod template carries `asya.sh/actor` through a keyed work queue.
 */
export class Controller {
  readonly apis: KubeApis
  readonly metrics: ControllerMetrics
  private readonly logger: Logger
  private readonly elector: LeaderElector | undefined
  private term: { informers: Map<string, WorkloadInformer>; queue: WorkQueue; reconciler: Reconciler; resync: NodeJS.Timeout; stopped: boolean } | undefined
  private termChange: Promise<void> = Promise.resolve()
  private started = false
  private lastEndQueuesFailed = false
  readonly identity: string

  constructor(private readonly o: ControllerOptions) {
    this.apis = makeKubeApis(o.kubeConfig)
    this.metrics = createControllerMetrics(o.registry)
    this.logger = o.logger
    this.identity = o.leaderElection?.identity ?? `${hostname()}-${randomBytes(4).toString('hex')}`
    if (o.leaderElection) {
      const le = o.leaderElection
      this.elector = new LeaderElector(this.apis.coordination, {
        name: le.name ?? 'asya-controller',
        namespace: le.namespace,
        identity: this.identity,
        leaseDurationMs: le.leaseDurationMs,
        renewDeadlineMs: le.renewDeadlineMs,
        retryPeriodMs: le.retryPeriodMs,
        logger: this.logger,
        onStartedLeading: () => this.changeTerm(true),
        onStoppedLeading: () => this.changeTerm(false),
      })
    }
  }

  get isLeader(): boolean {
    return this.term !== undefined && !this.term.stopped
  }

  start(): void {
    if (this.started) return
    this.started = true
    if (this.elector) this.elector.start()
    else this.changeTerm(true)
  }

  async stop(): Promise<void> {
    if (!this.started) return
    this.started = false
    // Stop reconciling before releasing the lease, so two leaders never overlap.
    this.changeTerm(false)
    await this.termChange
    await this.elector?.stop()
  }

  /** Resolves when the initial list is done and no reconcile is queued or running (tests, bench). */
  async idle(): Promise<void> {
    await this.termChange
    await this.term?.queue.idle()
  }

  /** Queues every known actor workload now (what the periodic resync does). */
  resyncNow(): void {
    const t = this.term
    if (!t || t.stopped) return
    void this.ensureEndActorQueues(t)
    t.reconciler.startResyncPeriod()
    for (const { kind, workload } of this.store(t.informers).list()) {
      if (templateActor(workload) !== undefined || workload.metadata?.annotations?.[ANNOTATION.wired] !== undefined) {
        t.queue.add(workloadKey(kind, workload.metadata?.namespace ?? '', workload.metadata?.name ?? ''))
      }
    }
  }

  private changeTerm(leading: boolean): void {
    this.termChange = this.termChange.then(() => (leading ? this.startTerm() : this.stopTerm())).catch((err: unknown) => {
      this.logger.error({ err: errorMessage(err) }, 'controller term change failed')
    })
    this.o.onLeadershipChange?.(leading)
  }

  private store(informers: Map<string, WorkloadInformer>): WorkloadStore {
    const all = this.o.namespaces.length === 0
    return {
      get: (kind, namespace, name) => informers.get(`${kind}/${all ? '' : namespace}`)?.get(name, namespace),
      list: () => {
        const out: Array<{ kind: WorkloadKind; workload: Workload }> = []
        for (const [k, inf] of informers) {
          const kind = k.slice(0, k.indexOf('/')) as WorkloadKind
          for (const workload of inf.list()) out.push({ kind, workload })
        }
        return out
      },
    }
  }

  private async startTerm(): Promise<void> {
    if (this.term && !this.term.stopped) return
    const informers = new Map<string, WorkloadInformer>()
    const store = this.store(informers)
    const reconciler = new Reconciler({
      apis: this.apis,
      store,
      queues: this.o.queues,
      scaler: this.o.scaler,
      defaultTransport: this.o.defaultTransport,
      runtimeScript: this.o.runtimeScript,
      events: new EventRecorder(this.apis.core, this.logger, this.identity),
      metrics: this.metrics,
      logger: this.logger,
      ...(this.o.endActors ? { endActors: this.o.endActors } : {}),
      shareActorsAcrossNamespaces: this.o.shareActorsAcrossNamespaces ?? false,
    })
    const queue = new WorkQueue((key) => reconciler.reconcile(key), {
      concurrency: this.o.concurrency ?? 8,
      backoff: { initialMs: this.o.backoff?.initialMs ?? 500, maxMs: this.o.backoff?.maxMs ?? 300_000 },
      onError: (key, err, retry) => this.logger.warn({ workload: key, retry, err: apiErrorMessage(err) }, 'reconcile failed; retrying with backoff'),
    })
    const resyncMs = this.o.resyncMs ?? 300_000
    const term = { informers, queue, reconciler, resync: setInterval(() => this.resyncNow(), resyncMs), stopped: false }
    term.resync.unref()
    this.term = term

    // What a reconcile depends on; our own status annotations are left out so that the watch
    // echo of a status patch does not trigger another (no-op) reconcile.
    const seen = new Map<string, string>()
    const hadActor = new Set<string>()
    const fingerprint = (w: Workload): string => {
      const own = new Set<string>([ANNOTATION.status, ANNOTATION.statusMessage, ANNOTATION.wired])
      const ann = Object.entries(w.metadata?.annotations ?? {}).filter(([k]) => k.startsWith(ANNOTATION_PREFIX) && !own.has(k))
      return JSON.stringify([w.metadata?.uid, Boolean(w.metadata?.deletionTimestamp), templateActor(w), ann, w.spec?.template?.metadata?.annotations ?? {}])
    }
    const enqueueRelated = (kind: WorkloadKind, w: Workload, event: 'add' | 'update' | 'delete'): void => {
      const ns = w.metadata?.namespace ?? ''
      const name = w.metadata?.name ?? ''
      const key = workloadKey(kind, ns, name)
      if (event === 'delete') seen.delete(key)
      else {
        const fp = fingerprint(w)
        if (event === 'update' && seen.get(key) === fp) return
        seen.set(key, fp)
      }
      const actors = new Set<string>()
      const a = templateActor(w)
      if (a !== undefined) actors.add(a)
      const wired = w.metadata?.annotations?.[ANNOTATION.wired]
      if (wired !== undefined) actors.add(wired.slice(wired.indexOf(':') + 1))
      if (actors.size === 0) {
        // Label gone and our annotations wiped too (a full replace by a GitOps tool): still the
        // workload we wired a moment ago, so it must be reconciled (unwired) once.
        if (!hadActor.delete(key)) return
      } else hadActor.add(key)
      queue.add(key)
      // Peers claiming the same actor: a conflict may have been resolved (or created) by this change.
      for (const peer of store.list()) {
        const pa = templateActor(peer.workload)
        const pns = peer.workload.metadata?.namespace ?? ''
        if ((pns === ns || !this.o.shareActorsAcrossNamespaces) && pa !== undefined && actors.has(pa)) {
          queue.add(workloadKey(peer.kind, pns, peer.workload.metadata?.name ?? ''))
        }
      }
    }

    const namespaces = this.o.namespaces.length === 0 ? [''] : [...this.o.namespaces]
    for (const kind of ['Deployment', 'StatefulSet'] as const) {
      for (const ns of namespaces) {
        const inf = this.makeWorkloadInformer(kind, ns)
        inf.on('add', (w) => enqueueRelated(kind, w, 'add'))
        inf.on('update', (w) => enqueueRelated(kind, w, 'update'))
        inf.on('delete', (w) => {
          reconciler.noteDeleted(kind, w)
          enqueueRelated(kind, w, 'delete')
        })
        let failures = 0
        inf.on('connect', () => {
          failures = 0
        })
        inf.on('error', (err: unknown) => {
          if (term.stopped) return
          failures++
          const delay = backoffDelay(failures, { initialMs: 500, maxMs: 30_000 })
          this.logger.warn({ kind, namespace: ns || '*', err: apiErrorMessage(err), retryInMs: delay }, 'watch failed; restarting informer')
          setTimeout(() => {
            if (!term.stopped) inf.start().catch(() => undefined)
          }, delay).unref()
        })
        informers.set(`${kind}/${ns}`, inf)
      }
    }
    await Promise.all([...informers.values()].map((inf) => inf.start()))
    void this.ensureEndActorQueues(term)
    this.logger.info({ identity: this.identity, namespaces: this.o.namespaces.length === 0 ? 'all' : this.o.namespaces }, 'controller started reconciling')
  }

  /**
   * The end actors' queues and DLQs on every configured transport, at the start of a term and on
   * every resync; a failure is retried with backoff while this replica leads.
   */
  private async ensureEndActorQueues(term: { stopped: boolean }, attempt = 1): Promise<void> {
    const names = this.o.endActors ?? END_ACTORS
    const failed: string[] = []
    for (const provisioner of Object.values(this.o.queues)) {
      if (!provisioner) continue
      for (const actor of names) {
        if (term.stopped) return
        try {
          await provisioner.ensure(actor, this.o.systemNamespace ?? 'asya-system')
        } catch (err) {
          failed.push(`${provisioner.transport}:${actor}`)
          this.logger.warn({ code: isAsyaError(err) ? err.code : undefined, actor, transport: provisioner.transport, err: errorMessage(err) }, 'end-actor queue provisioning failed')
        }
      }
    }
    if (failed.length === 0) {
      if (attempt === 1 || this.lastEndQueuesFailed) this.logger.info({ actors: names }, 'end-actor queues ensured')
      this.lastEndQueuesFailed = false
      return
    }
    this.lastEndQueuesFailed = true
    const delay = backoffDelay(attempt, { initialMs: 1000, maxMs: 60_000 })
    setTimeout(() => {
      if (!term.stopped) void this.ensureEndActorQueues(term, attempt + 1)
    }, delay).unref()
  }

  private async stopTerm(): Promise<void> {
    const t = this.term
    if (!t || t.stopped) return
    t.stopped = true
    clearInterval(t.resync)
    await Promise.all([...t.informers.values()].map((inf) => inf.stop().catch(() => undefined)))
    await t.queue.stop()
    this.term = undefined
    this.logger.info({ identity: this.identity }, 'controller stopped reconciling')
  }

  private makeWorkloadInformer(kind: WorkloadKind, namespace: string): WorkloadInformer {
    const apps = this.apis.apps
    const group = '/apis/apps/v1'
    const plural = kind === 'Deployment' ? 'deployments' : 'statefulsets'
    const path = namespace === '' ? `${group}/${plural}` : `${group}/namespaces/${namespace}/${plural}`
    const list =
      kind === 'Deployment'
        ? namespace === ''
          ? () => apps.listDeploymentForAllNamespaces()
          : () => apps.listNamespacedDeployment({ namespace })
        : namespace === ''
          ? () => apps.listStatefulSetForAllNamespaces()
          : () => apps.listNamespacedStatefulSet({ namespace })
    return makeInformer<V1Deployment | V1StatefulSet>(this.o.kubeConfig, path, list) as unknown as WorkloadInformer
  }
}
