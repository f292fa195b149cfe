import type { V1ConfigMap } from '@kubernetes/client-node'
import { AsyaError, errorMessage, isAsyaError } from '../errors.js'
import { isValidActorName, queueName } from '../envelope.js'
import type { Logger } from '../logger.js'
import {
  KEDA_GROUP,
  KEDA_VERSION,
  MANAGED_BY,
  MANAGED_BY_LABEL,
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
import type { QueueProvisioner, QueueTransport } from './queues.js'
import { STATUS_ANNOTATION, STATUS_MESSAGE_ANNOTATION, WIRED_ANNOTATION, type EventRecorder, type EventType } from './reporter.js'
import { readWorkloadSettings, type WorkloadSettings } from './settings.js'
import { ACTOR_LABEL, actorOwner, parseWorkloadKey, templateActor, workloadKey, type Workload, type WorkloadStore } from './workload.js'

export const RUNTIME_CONFIGMAP = 'asya-runtime'
export const RUNTIME_CONFIGMAP_KEY = 'asya_runtime.py'

export interface ReconcilerOptions {
  apis: KubeApis
  store: WorkloadStore
  queues: Partial<Record<QueueTransport, QueueProvisioner>>
  /** KEDA trigger settings for an actor on a transport. */
  scaler: (transport: QueueTransport, actor: string, namespace: string) => ScalerConfig
  defaultTransport: QueueTransport
  /** Content of runtime-py/asya_runtime.py for the `asya-runtime` ConfigMap. */
  runtimeScript: string
  events: EventRecorder
  metrics: ControllerMetrics
  logger: Logger
}

interface Wired {
  transport: QueueTransport
  actor: string
}

function parseWired(value: string | undefined): Wired | undefined {
  if (!value) return undefined
  const i = value.indexOf(':')
  const transport = value.slice(0, i)
  const actor = value.slice(i + 1)
  if ((transport !== 'rabbitmq' && transport !== 'sqs') || !isValidActorName(actor)) return undefined
  return { transport, actor }
}

interface Status {
  status: ActorStatus
  message: string
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
    const wired = parseWired(annotations[WIRED_ANNOTATION]) ?? parseWired(this.written.get(key)?.annotations[WIRED_ANNOTATION] ?? undefined)
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
      await this.setStatus(ref, workload, { status: 'InvalidConfig', message: `label ${ACTOR_LABEL}=${JSON.stringify(actor)} is not a DNS-1123 label (lowercase alphanumerics and '-', at most 63 characters)` })
      return 'invalid'
    }
    const parsed = readWorkloadSettings(annotations, workload.spec?.template?.metadata?.annotations, this.o.defaultTransport)
    const tooLong = nameProblems(name)
    if (!parsed.settings || tooLong.length > 0) {
      const problems = [...parsed.problems, ...tooLong]
      const code = tooLong.length > 0 ? 'ASYA_ERR_NAME_TOO_LONG' : 'ASYA_ERR_ADMISSION_INVALID_ANNOTATION'
      const message = `${code}: ${problems.join('; ')}`
      if (annotations[STATUS_MESSAGE_ANNOTATION] !== message) log.warn({ code, problems }, 'invalid actor configuration; existing objects left untouched')
      await this.setStatus(ref, workload, { status: 'InvalidConfig', message })
      return 'invalid'
    }
    const settings = parsed.settings
    const queues = this.o.queues[settings.transport]
    if (!queues) {
      await this.setStatus(ref, workload, { status: 'InvalidConfig', message: `transport ${settings.transport} is not configured in the Asya system process (asya.sh/transport)` })
      return 'invalid'
    }

    const claimants = this.o.store
      .list()
      .filter((c) => c.workload.metadata?.namespace === namespace && templateActor(c.workload) === actor)
    const owner = actorOwner(claimants)
    if (owner && (owner.kind !== kind || owner.workload.metadata?.name !== name)) {
      const other = `${owner.kind}/${owner.workload.metadata?.name ?? '?'}`
      // A workload that loses its claim gives up its KEDA objects; the queue is shared, so it stays.
      if (wired?.actor === actor) await this.deleteKeda(ref)
      await this.setStatus(
        ref,
        workload,
        { status: 'Conflict', message: `ASYA_ERR_ACTOR_CONFLICT: actor "${actor}" is already served by ${other} in namespace ${namespace}; this workload is not wired` },
        wired?.actor === actor ? null : undefined,
      )
      return 'conflict'
    }

    if (wired && (wired.actor !== actor || wired.transport !== settings.transport)) {
      // Actor renamed or moved to another transport: the old queue follows the retention policy.
      await this.removeQueue(ref, wired, settings.queueRetention, log)
    }

    try {
      await queues.ensure(actor, namespace)
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
      { status: 'Ready', message: `queue ${queueName(actor)} (${settings.transport}), ConfigMap ${RUNTIME_CONFIGMAP}, ${scaling}` },
      `${settings.transport}:${actor}`,
    )
    return 'ready'
  }

  private async unwire(ref: WorkloadRef, workload: Workload, wired: Wired, gone: boolean): Promise<void> {
    const log = this.o.logger.child({ workload: `${ref.kind}/${ref.namespace}/${ref.name}`, actor: wired.actor })
    await this.deleteKeda(ref)
    const retention = workload.metadata?.annotations?.['asya.sh/queue-retention'] === 'delete' ? 'delete' : 'retain'
    await this.removeQueue(ref, wired, retention, log)
    if (!gone) {
      const wrote = await this.patchAnnotations(ref, workload, { [STATUS_ANNOTATION]: null, [STATUS_MESSAGE_ANNOTATION]: null, [WIRED_ANNOTATION]: null })
      if (wrote) await this.o.events.record(ref, 'Normal', 'ActorRemoved', `actor "${wired.actor}" unwired (label ${ACTOR_LABEL} removed); queue ${retention === 'delete' ? 'deleted' : 'retained'}`)
    }
    log.info({ retention }, gone ? 'workload deleted; actor unwired' : 'actor label removed; actor unwired')
  }

  private async removeQueue(ref: WorkloadRef, wired: Wired, retention: 'retain' | 'delete', log: Logger): Promise<void> {
    if (retention !== 'delete') return
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
    const res = await queues.remove(wired.actor)
    log.info({ deleted: res.deleted, kept: res.kept }, 'actor queues removed per asya.sh/queue-retention=delete')
  }

  private async ensureRuntimeConfigMap(ref: WorkloadRef): Promise<void> {
    const ns = ref.namespace
    if (this.configMapsChecked.has(ns)) return
    const data = { [RUNTIME_CONFIGMAP_KEY]: this.o.runtimeScript }
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
    } else if (current.data?.[RUNTIME_CONFIGMAP_KEY] !== this.o.runtimeScript) {
      await this.o.apis.core.replaceNamespacedConfigMap({
        name: RUNTIME_CONFIGMAP,
        namespace: ns,
        body: { ...current, metadata: { ...current.metadata, labels: { ...current.metadata?.labels, [MANAGED_BY_LABEL]: MANAGED_BY } }, data: { ...current.data, ...data } },
      })
      this.o.logger.info({ namespace: ns }, 'runtime ConfigMap updated to this release')
    }
    this.configMapsChecked.add(ns)
  }

  private async ensureKeda(ref: WorkloadRef, actor: string, settings: WorkloadSettings, log: Logger): Promise<void> {
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
      throw new AsyaError('ASYA_ERR_K8S_API', `${desired.kind} ${ref.namespace}/${desired.metadata.name} exists and is not managed by Asya for this workload; not overwritten`)
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
    if (current[STATUS_ANNOTATION] !== s.status) patch[STATUS_ANNOTATION] = s.status
    if (current[STATUS_MESSAGE_ANNOTATION] !== s.message) patch[STATUS_MESSAGE_ANNOTATION] = s.message
    if (wired !== undefined && (current[WIRED_ANNOTATION] ?? null) !== wired) patch[WIRED_ANNOTATION] = wired
    if (Object.keys(patch).length === 0) return
    const changedStatus = current[STATUS_ANNOTATION] !== s.status || current[STATUS_MESSAGE_ANNOTATION] !== s.message
    const wrote = await this.patchAnnotations(ref, workload, patch)
    if (wrote && changedStatus) {
      const type: EventType = s.status === 'Ready' ? 'Normal' : 'Warning'
      const reason = s.status === 'Ready' ? 'ActorReady' : s.status
      await this.o.events.record({ ...ref, resourceVersion: workload.metadata?.resourceVersion }, type, reason, s.message)
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
    for (const k of [STATUS_ANNOTATION, STATUS_MESSAGE_ANNOTATION, WIRED_ANNOTATION]) annotations[k] = res.metadata?.annotations?.[k] ?? null
    this.written.set(key, { rv: res.metadata?.resourceVersion ?? '', annotations })
    return true
  }
}

