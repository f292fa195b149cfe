import type { V1ObjectMeta } from '@kubernetes/client-node'
import type { WorkloadKind } from './keda.js'
import { ACTOR_LABEL, ANNOTATION } from '../names.js'


/** The part of a Deployment / StatefulSet the controller reads. */
export interface Workload {
  metadata?: V1ObjectMeta
  spec?: { template?: { metadata?: V1ObjectMeta } }
}

export interface WorkloadKey {
  kind: WorkloadKind
  namespace: string
  name: string
}

export function workloadKey(kind: WorkloadKind, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`
}

export function parseWorkloadKey(key: string): WorkloadKey {
  const [kind, namespace, ...rest] = key.split('/')
  return { kind: kind as WorkloadKind, namespace: namespace ?? '', name: rest.join('/') }
}

/** The actor name of the pod template label, or undefined when the workload is not an actor. */
export function templateActor(w: Workload): string | undefined {
  const v = w.spec?.template?.metadata?.labels?.[ACTOR_LABEL]
  return v === undefined ? undefined : v
}

/** Read access to the informers' caches. */
export interface WorkloadStore {
  get(kind: WorkloadKind, namespace: string, name: string): Workload | undefined
  list(): Array<{ kind: WorkloadKind; workload: Workload }>
}

function created(w: Workload): number {
  const t = w.metadata?.creationTimestamp
  return t ? new Date(t).getTime() : Number.MAX_SAFE_INTEGER
}

/** True when the controller already wired this workload for the actor its template names. */
function incumbent(w: Workload): boolean {
  const wired = w.metadata?.annotations?.[ANNOTATION.wired]
  const actor = templateActor(w)
  return wired !== undefined && actor !== undefined && wired.slice(wired.indexOf(':') + 1) === actor
}

/**
 * Among workloads claiming the same actor, the owner is the oldest (creationTimestamp), ties
 * broken by who is already wired, then kind, namespace and name: a stable choice every replica
 * agrees on, and an existing actor is never displaced by a newcomer — creationTimestamp has
 * one-second resolution, so a newcomer created in the same second as the owner would otherwise
 * win or lose by the spelling of its name.
 */
export function actorOwner(claimants: Array<{ kind: WorkloadKind; workload: Workload }>): { kind: WorkloadKind; workload: Workload } | undefined {
  let best: { kind: WorkloadKind; workload: Workload } | undefined
  for (const c of claimants) {
    if (c.workload.metadata?.deletionTimestamp) continue
    if (best === undefined) {
      best = c
      continue
    }
    const a = created(c.workload)
    const b = created(best.workload)
    const an = `${c.kind}/${c.workload.metadata?.namespace ?? ''}/${c.workload.metadata?.name ?? ''}`
    const bn = `${best.kind}/${best.workload.metadata?.namespace ?? ''}/${best.workload.metadata?.name ?? ''}`
    const ai = incumbent(c.workload)
    const bi = incumbent(best.workload)
    if (a < b || (a === b && ai && !bi) || (a === b && ai === bi && an < bn)) best = c
  }
  return best
}
