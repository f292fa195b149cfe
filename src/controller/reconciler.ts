import type { V1ConfigMap } from '@kubernetes/client-node'
import { parsePodAnnotations } from '../annotations.js'
import { errorMessage, errors, isAsyaError, type AsyaError } from '../errors.js'
import { ACTOR_LABEL, ANNOTATION, CLUSTER_TRANSPORTS, DNS1123_LABEL_RULE, END_ACTORS, MANAGED_BY, MANAGED_BY_LABEL, RUNTIME_CONFIGMAP, RUNTIME_SCRIPT_KEY, isValidActorName, queueName, type ClusterTransportName } from '../names.js'
import type { Logger } from '../logger.js'
import {
  KEDA_GROUP,
  KEDA_VERSION,
  SCALED_OBJECTS,
  TRIGGER_AUTHS,
  buildScaledObject,
  buildTriggerAuth,
  matches,
  nameProblems,
  triggerAuthName,
  type KubeObject,
  type ScalerConfig,
  type WorkloadKind,
  type WorkloadRef,
} from './keda.js'
import { MERGE_PATCH, httpStatus, isNotFound, type KubeApis } from './kube.js'
import type { ActorStatus, ControllerMetrics, ReconcileResult } from './metrics.js'
import type { QueueNotice, QueueProvisioner } from './queues.js'
import type { EventRecorder, EventType } from './reporter.js'
import { parseWorkloadAnnotations, type WorkloadAnnotations } from '../annotations.js'
import { actorOwner, parseWorkloadKey, templateActor, workloadKey, type Workload, type WorkloadStore } from './workload.js'


export interface ReconcilerOptions {
  apis: KubeApis
  store: WorkloadStore
  queues: Partial<Record<ClusterTransportName, QueueProvisioner>>
  /** KEDA trigger settings for an actor on a transport. */
  scaler: (transport: ClusterTransportName, actor: string, namespace: string) => ScalerConfig
  defaultTransport: ClusterTransportName
  /** Content of runtime-py/asya_runtime.py for the `asya-runtime` ConfigMap. */
  runtimeScript: string
  events: EventRecorder
  metrics: ControllerMetrics
  logger: Logger
  /** Actors whose queues are never deleted by queue retention. @default ['happy-end', 'error-end'] */
  endActors?: readonly string[]
  /** Workloads in different namespaces may serve one actor (one queue). @default false: Conflict */
  shareActorsAcrossNamespaces?: boolean
}

interface Wired {
  transport: ClusterTransportName
  actor: string
}

/** `ASYA_ERR_…: message`: the status message of a workload the controller will not wire. */
function statusMessage(err: AsyaError): string {
  return `${err.code}: ${err.message}`
}

function parseWired(value: string | undefined): Wired | undefined {
  if (!value) return undefined
  const i = value.indexOf(':')
  const transport = value.slice(0, i)
  const actor = value.slice(i + 1)
  const known = CLUSTER_TRANSPORTS.find((t) => t === transport)
  if (known === undefined || !isValidActorName(actor)) return undefined
  return { transport: known, actor }
}

interface Status {
  status: ActorStatus
  message: string
  /** Warnings recorded as their own Events (and logged) when the status message changes. */
  notices?: QueueNotice[]
}

/**
 * Turns one workload's labels and annotations into queues, the runtime ConfigMap and KEDA
 * objects. Every step compares desired with observed state first, so reconciling an unchanged
 * workload writes nothing to the API server or the broker (beyond idempotent declares).
 */
export class Reconciler {
  /** Last state of deleted workloads, kept until their cleanup succeeded. */
  private readonly tombstones = new Map<string, { kind: WorkloadKind; workload: Workload }>()
  /** Status we last wrote per key, with the resourceVersion the API returned (the cache may lag). */
  private readonly written = new Map<string, { rv: string; annotations: Record<string, string | null> }>()
  /** Namespaces whose runtime ConfigMap was verified in this resync period. */
  private readonly configMapsChecked = new Set<string>()

  constructor(private readonly o: ReconcilerOptions) {}

  /** Remembers a deleted workload so its cleanup can run (informer delete event). */
  noteDeleted(kind: WorkloadKind, workload: Workload): void {
    const m = workload.metadata
    if (m?.name && m.namespace) this.tombstones.set(workloadKey(kind, m.namespace, m.name), { kind, workload })
  }

  /** Forget per-period memos so the next pass re-verifies everything (called on each resync). */
  startResyncPeriod(): void {
    this.configMapsChecked.clear()
  }

  async reconcile(key: string): Promise<void> {
    const end = this.o.metrics.reconcileDuration.startTimer()
    let result: ReconcileResult = 'error'
    try {
      result = await this.reconcileInner(key)
    } finally {
      end()
      this.o.metrics.reconcileTotal.inc({ result })
    }
  }

  private async reconcileInner(key: string): Promise<ReconcileResult> {
    const { kind, namespace, name } = parseWorkloadKey(key)
    const live = this.o.store.get(kind, namespace, name)
    const tomb = this.tombstones.get(key)
    const workload = live ?? tomb?.workload
    if (!workload) return 'skipped'
    const gone = live === undefined || Boolean(live.metadata?.deletionTimestamp)
    if (live) this.tombstones.delete(key)
    const ref: WorkloadRef = { kind, namespace, name, uid: workload.metadata?.uid ?? '' }
    const annotations = workload.metadata?.annotations ?? {}
    // A full replace of the workload (PUT by a GitOps tool) can drop our annotations; what this
    // process wrote last still says the actor was wired, so the label removal is not missed.
    const wired = parseWired(annotations[ANNOTATION.wired]) ?? parseWired(this.written.get(key)?.annotations[ANNOTATION.wired] ?? undefined)
    const actor = gone ? undefined : templateActor(workload)

    if (actor === undefined) {
      if (wired) await this.unwire(ref, workload, wired, gone)
      this.tombstones.delete(key)
      this.o.metrics.statuses.delete(key)
      if (gone) this.written.delete(key)
      return wired ? 'removed' : 'skipped'
    }

    const log = this.o.logger.child({ workload: key, actor })
    if (!isValidActorName(actor)) {
      await this.setStatus(ref, workload, { status: 'InvalidConfig', message: `label ${ACTOR_LABEL}=${JSON.stringify(actor)} is not ${DNS1123_LABEL_RULE}` })
      return 'invalid'
    }
    const parsed = parseWorkloadAnnotations(annotations, workload.spec?.template?.metadata?.annotations, this.o.defaultTransport)
    const tooLong = nameProblems(name)
    if (!parsed.value || tooLong.length > 0) {
      const problems = [...parsed.problems.map((p) => p.message), ...tooLong]
      const code = tooLong.length > 0 ? 'ASYA_ERR_NAME_TOO_LONG' : 'ASYA_ERR_ADMISSION_INVALID_ANNOTATION'
      const message = `${code}: ${problems.join('; ')}`
      if (annotations[ANNOTATION.statusMessage] !== message) log.warn({ code, problems }, 'invalid actor configuration; existing objects left untouched')
      await this.setStatus(ref, workload, { status: 'InvalidConfig', message })
      return 'invalid'
    }
    const settings = parsed.value
    const queues = this.o.queues[settings.transport]
    if (!queues) {
      await this.setStatus(ref, workload, { status: 'InvalidConfig', message: `transport ${settings.transport} is not configured in the Asya system process (${ANNOTATION.transport})` })
      return 'invalid'
    }

    const claimants = this.o.store
      .list()
      // Queues are named after the actor alone, so workloads in two namespaces with one actor name
      // would share a queue without anyone noticing: a conflict unless the operator allows it.
      .filter((c) => (c.workload.metadata?.namespace === namespace || !this.o.shareActorsAcrossNamespaces) && templateActor(c.workload) === actor)
    const owner = actorOwner(claimants)
    if (owner && (owner.kind !== kind || owner.workload.metadata?.name !== name || owner.workload.metadata?.namespace !== namespace)) {
      const ons = owner.workload.metadata?.namespace ?? '?'
      const other = `${owner.kind}/${owner.workload.metadata?.name ?? '?'}${ons === namespace ? '' : ` in namespace ${ons}`}`
      // A workload that loses its claim gives up its KEDA objects; the queue is shared, so it stays.
      if (wired?.actor === actor) await this.deleteKeda(ref)
      await this.setStatus(
        ref,
        workload,
        {
          status: 'Conflict',
          message:
            ons === namespace
              ? `ASYA_ERR_ACTOR_CONFLICT: actor "${actor}" is already served by ${other} in namespace ${namespace}; this workload is not wired`
              : `ASYA_ERR_ACTOR_CONFLICT: actor "${actor}" is already served by ${other} (queue ${queueName(actor)} is per actor name, cluster-wide); this workload is not wired; rename one, or set ASYA_SHARED_ACTOR_NAMES=true to let namespaces share it`,
        },
        wired?.actor === actor ? null : undefined,
      )
      return 'conflict'
    }

    if (wired && (wired.actor !== actor || wired.transport !== settings.transport)) {
      // Actor renamed or moved to another transport: the old queue follows the retention policy.
      await this.removeQueue(ref, wired, settings.queueRetention, log)
    }

    let notices: QueueNotice[] = []
    try {
      // The pod template's asya.sh/timeout, read by the webhook's own parser (SQS visibility).
      const template = workload.spec?.template?.metadata
      const timeoutSeconds = parsePodAnnotations(template?.labels, template?.annotations).value?.timeoutSeconds
      notices = (await queues.ensure(actor, namespace, { ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}), maxReplicas: settings.maxReplicas })) ?? []
    } catch (err) {
      const code = isAsyaError(err) ? err.code : 'ASYA_ERR_TRANSPORT_CONNECTION'
      const message = `${code}: queue ${queueName(actor)} on ${settings.transport}: ${errorMessage(err)}`
      log.error({ code, err: errorMessage(err) }, 'queue provisioning failed')
      await this.setStatus(ref, workload, { status: 'QueueError', message })
      throw err
    }
    await this.ensureRuntimeConfigMap(ref)
    await this.ensureKeda(ref, actor, settings, log)
    const scaling = settings.scaling === 'off' ? 'scaling off' : `ScaledObject ${name}`
    await this.setStatus(
      ref,
      workload,
      {
        status: 'Ready',
        message: `queue ${queueName(actor)} (${settings.transport}), ConfigMap ${RUNTIME_CONFIGMAP}, ${scaling}${notices.map((n) => `; ${n.message}`).join('')}`,
        notices,
      },
      `${settings.transport}:${actor}`,
    )
    return 'ready'
  }

  private async unwire(ref: WorkloadRef, workload: Workload, wired: Wired, gone: boolean): Promise<void> {
    const log = this.o.logger.child({ workload: `${ref.kind}/${ref.namespace}/${ref.name}`, actor: wired.actor })
    await this.deleteKeda(ref)
    const r = workload.metadata?.annotations?.[ANNOTATION.queueRetention]
    const retention = r === 'delete' || r === 'force-delete' ? r : 'retain'
    await this.removeQueue(ref, wired, retention, log)
    if (!gone) {
      const wrote = await this.patchAnnotations(ref, workload, { [ANNOTATION.status]: null, [ANNOTATION.statusMessage]: null, [ANNOTATION.wired]: null })
      if (wrote) await this.o.events.record(ref, 'Normal', 'ActorRemoved', `actor "${wired.actor}" unwired (label ${ACTOR_LABEL} removed); queue ${retention === 'retain' ? 'retained' : 'deleted'}`)
    }
    log.info({ retention }, gone ? 'workload deleted; actor unwired' : 'actor label removed; actor unwired')
  }

  private async removeQueue(ref: WorkloadRef, wired: Wired, retention: 'retain' | 'delete' | 'force-delete', log: Logger): Promise<void> {
    if (retention === 'retain') return
    if ((this.o.endActors ?? END_ACTORS).includes(wired.actor)) {
      // Every actor routes to them: their queues outlive any one end-actor workload.
      log.info('queue retention is delete, but end-actor queues are always kept')
      return
    }
    // Queues are per actor name, not per namespace: keep it while any other workload still uses it.
    const stillUsed = this.o.store.list().some((c) => {
      const m = c.workload.metadata
      return !(c.kind === ref.kind && m?.namespace === ref.namespace && m?.name === ref.name) && !m?.deletionTimestamp && templateActor(c.workload) === wired.actor
    })
    if (stillUsed) {
      log.info('queue retention is delete, but another workload still uses the actor; queue kept')
      return
    }
    const queues = this.o.queues[wired.transport]
    if (!queues) return
    const res = await queues.remove(wired.actor, { force: retention === 'force-delete' })
    log.info({ deleted: res.deleted, kept: res.kept }, `actor queues removed per asya.sh/queue-retention=${retention}`)
    const held = res.kept.find((k) => k.queue === queueName(wired.actor))
    if (held) {
      // Not deleted under the messages: reported, and retried with backoff until empty (or forced).
      const message = `queue ${held.queue} not deleted: ${held.reason}`
      log.warn({ code: 'ASYA_ERR_TRANSPORT_QUEUE_NOT_EMPTY', queue: held.queue }, message)
      await this.o.events.record(ref, 'Warning', 'QueueRetained', message)
      throw new errors.ASYA_ERR_TRANSPORT_QUEUE_NOT_EMPTY(message, { details: { queue: held.queue } })
    }
  }

  private async ensureRuntimeConfigMap(ref: WorkloadRef): Promise<void> {
    const ns = ref.namespace
    if (this.configMapsChecked.has(ns)) return
    const data = { [RUNTIME_SCRIPT_KEY]: this.o.runtimeScript }
    let current: V1ConfigMap | undefined
    try {
      current = await this.o.apis.core.readNamespacedConfigMap({ name: RUNTIME_CONFIGMAP, namespace: ns })
    } catch (err) {
      if (!isNotFound(err)) throw err
    }
    if (!current) {
      try {
        await this.o.apis.core.createNamespacedConfigMap({
          namespace: ns,
          body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: RUNTIME_CONFIGMAP, namespace: ns, labels: { [MANAGED_BY_LABEL]: MANAGED_BY } }, data },
        })
        this.o.logger.info({ namespace: ns }, 'runtime ConfigMap created')
      } catch (err) {
        // Another reconcile of the same namespace created it first: fine, verify on the next pass.
        if (httpStatus(err) !== 409) throw err
        return
      }
    } else if (current.data?.[RUNTIME_SCRIPT_KEY] !== this.o.runtimeScript) {
      await this.o.apis.core.replaceNamespacedConfigMap({
        name: RUNTIME_CONFIGMAP,
        namespace: ns,
        body: { ...current, metadata: { ...current.metadata, labels: { ...current.metadata?.labels, [MANAGED_BY_LABEL]: MANAGED_BY } }, data: { ...current.data, ...data } },
      })
      this.o.logger.info({ namespace: ns }, 'runtime ConfigMap updated to this release')
    }
    this.configMapsChecked.add(ns)
  }

  private async ensureKeda(ref: WorkloadRef, actor: string, settings: WorkloadAnnotations, log: Logger): Promise<void> {
    if (settings.scaling === 'off') {
      await this.deleteKeda(ref)
      return
    }
    const scaler = this.o.scaler(settings.transport, actor, ref.namespace)
    const ta = buildTriggerAuth(ref, actor, scaler)
    if (ta) await this.applyCustom(ref, TRIGGER_AUTHS, ta, log)
    else await this.deleteCustom(ref, TRIGGER_AUTHS, triggerAuthName(ref.name))
    await this.applyCustom(ref, SCALED_OBJECTS, buildScaledObject(ref, actor, settings, scaler), log)
  }

  private async deleteKeda(ref: WorkloadRef): Promise<void> {
    await this.deleteCustom(ref, SCALED_OBJECTS, ref.name)
    await this.deleteCustom(ref, TRIGGER_AUTHS, triggerAuthName(ref.name))
  }

  private async readCustom(namespace: string, plural: string, name: string): Promise<KubeObject | undefined> {
    try {
      return (await this.o.apis.custom.getNamespacedCustomObject({ group: KEDA_GROUP, version: KEDA_VERSION, namespace, plural, name })) as KubeObject
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw err
    }
  }

  /** Create or replace (with the observed resourceVersion) unless the observed object already matches. */
  private async applyCustom(ref: WorkloadRef, plural: string, desired: KubeObject, log: Logger): Promise<void> {
    const base = { group: KEDA_GROUP, version: KEDA_VERSION, namespace: ref.namespace, plural }
    const observed = await this.readCustom(ref.namespace, plural, desired.metadata.name)
    if (!observed) {
      await this.o.apis.custom.createNamespacedCustomObject({ ...base, body: desired })
      log.info({ object: `${desired.kind}/${desired.metadata.name}` }, 'created')
      return
    }
    if (!this.ownedBy(observed, ref)) {
      throw new errors.ASYA_ERR_K8S_API(`${desired.kind} ${ref.namespace}/${desired.metadata.name} exists and is not managed by Asya for this workload; not overwritten`)
    }
    if (matches(desired, observed)) return
    const body: KubeObject = {
      ...observed,
      metadata: {
        ...observed.metadata,
        labels: { ...observed.metadata.labels, ...desired.metadata.labels },
        ownerReferences: desired.metadata.ownerReferences,
      },
      spec: desired.spec,
    }
    await this.o.apis.custom.replaceNamespacedCustomObject({ ...base, name: desired.metadata.name, body })
    log.info({ object: `${desired.kind}/${desired.metadata.name}` }, 'updated')
    await this.o.events.record(ref, 'Normal', `${desired.kind}Updated`, `${desired.kind} ${desired.metadata.name} updated from the workload's annotations`)
  }

  private ownedBy(obj: KubeObject, ref: WorkloadRef): boolean {
    if (obj.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY) return true
    return (obj.metadata.ownerReferences ?? []).some((r) => r.uid === ref.uid)
  }

  private async deleteCustom(ref: WorkloadRef, plural: string, name: string): Promise<void> {
    const observed = await this.readCustom(ref.namespace, plural, name)
    if (!observed || !this.ownedBy(observed, ref)) return
    try {
      await this.o.apis.custom.deleteNamespacedCustomObject({ group: KEDA_GROUP, version: KEDA_VERSION, namespace: ref.namespace, plural, name })
      this.o.logger.info({ object: `${plural}/${ref.namespace}/${name}` }, 'deleted')
    } catch (err) {
      if (!isNotFound(err)) throw err
    }
  }

  /**
   * Writes `asya.sh/status` (+ message, + what was wired) only when it changes, with an Event on
   * every transition. `wired` undefined = leave as is, null = remove.
   */
  private async setStatus(ref: WorkloadRef, workload: Workload, s: Status, wired?: string | null): Promise<void> {
    const key = workloadKey(ref.kind, ref.namespace, ref.name)
    this.o.metrics.statuses.set(key, s.status)
    const current = workload.metadata?.annotations ?? {}
    const patch: Record<string, string | null> = {}
    if (current[ANNOTATION.status] !== s.status) patch[ANNOTATION.status] = s.status
    if (current[ANNOTATION.statusMessage] !== s.message) patch[ANNOTATION.statusMessage] = s.message
    if (wired !== undefined && (current[ANNOTATION.wired] ?? null) !== wired) patch[ANNOTATION.wired] = wired
    if (Object.keys(patch).length === 0) return
    const changedStatus = current[ANNOTATION.status] !== s.status || current[ANNOTATION.statusMessage] !== s.message
    const wrote = await this.patchAnnotations(ref, workload, patch)
    if (wrote && changedStatus) {
      const type: EventType = s.status === 'Ready' ? 'Normal' : 'Warning'
      const reason = s.status === 'Ready' ? 'ActorReady' : s.status
      await this.o.events.record({ ...ref, resourceVersion: workload.metadata?.resourceVersion }, type, reason, s.message)
      // Reported once: the status message carries the notice, so this runs again only if it changes.
      for (const n of s.notices ?? []) {
        this.o.logger.warn({ code: 'ASYA_ERR_TRANSPORT_QUEUE_MISMATCH', workload: key, reason: n.reason }, n.message)
        await this.o.events.record({ ...ref, resourceVersion: workload.metadata?.resourceVersion }, 'Warning', n.reason, n.message)
      }
    }
  }

  /** Merge-patches workload annotations; false when skipped because this exact patch was already applied. */
  private async patchAnnotations(ref: WorkloadRef, workload: Workload, patch: Record<string, string | null>): Promise<boolean> {
    const key = workloadKey(ref.kind, ref.namespace, ref.name)
    const rv = workload.metadata?.resourceVersion ?? ''
    const prev = this.written.get(key)
    // The informer cache can lag behind our own write; do not send the same patch twice.
    if (prev && prev.rv !== '' && Number(prev.rv) >= Number(rv) && Object.entries(patch).every(([k, v]) => prev.annotations[k] === v)) return false
    const body = { metadata: { annotations: patch } }
    const res =
      ref.kind === 'Deployment'
        ? await this.o.apis.apps.patchNamespacedDeployment({ name: ref.name, namespace: ref.namespace, body }, MERGE_PATCH)
        : await this.o.apis.apps.patchNamespacedStatefulSet({ name: ref.name, namespace: ref.namespace, body }, MERGE_PATCH)
    const annotations: Record<string, string | null> = {}
    for (const k of [ANNOTATION.status, ANNOTATION.statusMessage, ANNOTATION.wired]) annotations[k] = res.metadata?.annotations?.[k] ?? null
    this.written.set(key, { rv: res.metadata?.resourceVersion ?? '', annotations })
    return true
  }
}

