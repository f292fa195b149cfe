/**
 * Kubernetes Events for pods admitted without injection (SPEC §6: "admitted unchanged with a
 * warning (and an Event)"). The pod has no name yet at admission (generateName), so the Event is
 * recorded on its owner (the ReplicaSet/StatefulSet/Job), where `kubectl describe` shows it next
 * to the workload's own events. Fire and forget: admission never waits for or fails on it.
 */
import { randomBytes } from 'node:crypto'
import { CoreV1Api, type KubeConfig, type CoreV1Event } from '@kubernetes/client-node'
import { errorMessage } from '../src/errors.js'
import type { Logger } from '../src/logger.js'

export type WarningRecorder = (pod: unknown, namespace: string | undefined, reason: string, message: string) => void

interface Ref {
  apiVersion?: string
  kind?: string
  name?: string
  uid?: string
}

function involved(pod: unknown): Ref | undefined {
  if (typeof pod !== 'object' || pod === null) return undefined
  const meta = (pod as { metadata?: { name?: unknown; generateName?: unknown; uid?: unknown; ownerReferences?: unknown } }).metadata ?? {}
  const owners = Array.isArray(meta.ownerReferences) ? (meta.ownerReferences as Ref[]) : []
  const owner = owners.find((o) => (o as { controller?: unknown }).controller === true) ?? owners[0]
  if (owner && typeof owner.name === 'string') return { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.name, uid: owner.uid }
  if (typeof meta.name === 'string') return { apiVersion: 'v1', kind: 'Pod', name: meta.name }
  return undefined
}

export function kubeWarningRecorder(kubeConfig: KubeConfig, logger: Logger): WarningRecorder {
  const core = kubeConfig.makeApiClient(CoreV1Api)
  return (pod, namespace, reason, message) => {
    const ref = involved(pod)
    if (!ref || namespace === undefined) return
    const now = new Date()
    const body: CoreV1Event = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: `${ref.name}.${randomBytes(8).toString('hex')}`, namespace },
      involvedObject: { ...ref, namespace },
      reason,
      message: message.slice(0, 1024),
      type: 'Warning',
      source: { component: 'asya-webhook' },
      reportingComponent: 'asya-webhook',
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    }
    core.createNamespacedEvent({ namespace, body }).catch((err: unknown) => {
      logger.warn({ code: 'ASYA_ERR_K8S_API', err: errorMessage(err), namespace }, 'cannot record the admission warning Event')
    })
  }
}
