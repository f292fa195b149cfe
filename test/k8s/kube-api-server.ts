/**
 * A Kubernetes API test server: speaks the real REST + watch protocol to the real
 * @kubernetes/client-node and to kubectl (no real API server can run on these machines). Faithful
 * where our components and tests depend on it; documented in test/README.md.
 *
 * - discovery: /version, /api, /api/v1, /apis, /apis/<group>/<version>
 * - CRUD for the kinds in RESOURCES, namespaced and cluster-scoped; Status objects on errors
 *   (404 NotFound, 409 AlreadyExists / Conflict, 422 Invalid, 400 BadRequest)
 * - resourceVersion from one global counter; optimistic concurrency on PUT; generation bumps on
 *   spec changes; JSON merge patch, JSON patch (strategic merge patch is treated as merge patch)
 * - list + watch (?watch=1, resourceVersion replay, 410 Expired as a watch ERROR event for
 *   versions older than the retained history), label and field selectors
 * - ownerReference garbage collection (background) on delete
 * - Deployment → ReplicaSet → Pods and StatefulSet → Pods, honouring spec.replicas; pods are
 *   created through the same admission path as API requests
 * - admission: every MutatingWebhookConfiguration whose rules, objectSelector and
 *   namespaceSelector match is called over HTTPS with a real AdmissionReview, the server
 *   certificate is verified against caBundle, timeoutSeconds and failurePolicy are honoured,
 *   and the returned JSON Patch is applied
 * - fault injection: failNext(status, match) answers the next matching request with an error
 * - pod proxy (GET /api/v1/namespaces/<ns>/pods/<pod>[:<port>]/proxy/<path>): forwarded to the
 *   address registered with setPodHost (test pods have no IP); 503 ServiceUnavailable otherwise,
 *   as the API server answers for a pod it cannot reach
 */
import { randomBytes, randomUUID, createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { AddressInfo } from 'node:net'
import fjp from 'fast-json-patch'
import { KubeConfig } from '@kubernetes/client-node'

export type KObj = { apiVersion?: string; kind?: string; metadata: KMeta; [k: string]: unknown }
export interface KMeta {
  name: string
  namespace?: string
  uid?: string
  resourceVersion?: string
  generation?: number
  creationTimestamp?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
  ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }>
  generateName?: string
  [k: string]: unknown
}

interface ResourceDef {
  group: string
  version: string
  plural: string
  kind: string
  namespaced: boolean
}

export const RESOURCES: ResourceDef[] = [
  { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true },
  { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true },
  { group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true },
  { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true },
  { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
  { group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment', namespaced: true },
  { group: 'apps', version: 'v1', plural: 'statefulsets', kind: 'StatefulSet', namespaced: true },
  { group: 'apps', version: 'v1', plural: 'replicasets', kind: 'ReplicaSet', namespaced: true },
  { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true },
  { group: 'admissionregistration.k8s.io', version: 'v1', plural: 'mutatingwebhookconfigurations', kind: 'MutatingWebhookConfiguration', namespaced: false },
  { group: 'keda.sh', version: 'v1alpha1', plural: 'scaledobjects', kind: 'ScaledObject', namespaced: true },
  { group: 'monitoring.coreos.com', version: 'v1', plural: 'podmonitors', kind: 'PodMonitor', namespaced: true },
  { group: 'keda.sh', version: 'v1alpha1', plural: 'triggerauthentications', kind: 'TriggerAuthentication', namespaced: true },
  { group: 'policy', version: 'v1', plural: 'poddisruptionbudgets', kind: 'PodDisruptionBudget', namespaced: true },
  { group: 'networking.k8s.io', version: 'v1', plural: 'networkpolicies', kind: 'NetworkPolicy', namespaced: true },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterroles', kind: 'ClusterRole', namespaced: false },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterrolebindings', kind: 'ClusterRoleBinding', namespaced: false },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'roles', kind: 'Role', namespaced: true },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'rolebindings', kind: 'RoleBinding', namespaced: true },
]

const apiVersionOf = (r: ResourceDef): string => (r.group === '' ? r.version : `${r.group}/${r.version}`)
const collKey = (r: ResourceDef): string => `${r.group}/${r.plural}`
const clone = <T>(v: T): T => structuredClone(v)

export interface RequestLogEntry {
  method: string
  path: string
  status: number
}

export interface KubeApiServerOptions {
  /**
   * Where in-cluster Service names resolve for admission calls: `<svc>.<ns>.svc:<port>` →
   * `host:port` (e.g. a webhook listening on 127.0.0.1 in the test).
   */
  serviceHosts?: Record<string, string>
  /** Events kept for watch replay; older resourceVersions get 410 Expired. @default 5000 */
  historyLimit?: number
  /**
   * Create a missing namespace on first use instead of answering 404 like the API server does.
   * For tests that are not about namespaces. @default false
   */
  autoCreateNamespaces?: boolean
}

export interface KubeApiServer {
  url: string
  kubeConfig: KubeConfig
  requestLog: RequestLogEntry[]
  /** Answers the next request matching `match` with `status` (409 → Conflict, 500 → InternalError). */
  failNext(status: number, match?: { method?: string; pathIncludes?: string }): void
  get(plural: string, namespace: string | undefined, name: string, group?: string): KObj | undefined
  list(plural: string, namespace?: string, group?: string): KObj[]
  /** Drops the watch history so older resourceVersions are answered with 410 Expired. */
  compactHistory(): void
  /** Maps a Service host (`svc.ns.svc:port`) to a local address for admission calls. */
  setServiceHost(service: string, hostPort: string): void
  /** Where the pod proxy forwards `<ns>/<pod>:<port>` (a local `host:port`). */
  setPodHost(namespace: string, pod: string, port: number, hostPort: string): void
  close(): Promise<void>
}

class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message)
  }
}

function statusBody(code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch
  const out: Record<string, unknown> = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k], v)
  }
  return out
}

/** Label selector: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`, comma-separated. */
export function matchLabelSelector(selector: string, labels: Record<string, string> = {}): boolean {
  const terms = selector.match(/[^,(]+(\([^)]*\))?/g) ?? []
  for (const raw of terms) {
    const term = raw.trim()
    if (term === '') continue
    let m: RegExpExecArray | null
    if ((m = /^([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(term))) {
      const values = (m[3] as string).split(',').map((s) => s.trim())
      const has = (m[1] as string) in labels && values.includes(labels[m[1] as string] as string)
      if (m[2] === 'in' ? !has : has) return false
    } else if ((m = /^([^\s!=]+)\s*!=\s*(.*)$/.exec(term))) {
      if (labels[m[1] as string] === m[2]) return false
    } else if ((m = /^([^\s!=]+)\s*==?\s*(.*)$/.exec(term))) {
      if (labels[m[1] as string] !== m[2]) return false
    } else if ((m = /^!\s*(\S+)$/.exec(term))) {
      if ((m[1] as string) in labels) return false
    } else if (!(term in labels)) return false
  }
  return true
}

/** metav1.LabelSelector (matchLabels + matchExpressions). */
export function matchSelectorObject(sel: { matchLabels?: Record<string, string>; matchExpressions?: Array<{ key: string; operator: string; values?: string[] }> } | undefined, labels: Record<string, string> = {}): boolean {
  if (!sel) return true
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false
  for (const e of sel.matchExpressions ?? []) {
    const has = e.key in labels
    const val = labels[e.key]
    if (e.operator === 'Exists' && !has) return false
    if (e.operator === 'DoesNotExist' && has) return false
    if (e.operator === 'In' && !(has && (e.values ?? []).includes(val as string))) return false
    if (e.operator === 'NotIn' && has && (e.values ?? []).includes(val as string)) return false
  }
  return true
}

export async function startKubeApiServer(o: KubeApiServerOptions = {}): Promise<KubeApiServer> {
  let rv = 1
  const historyLimit = o.historyLimit ?? 5000
  const store = new Map<string, Map<string, KObj>>() // collKey → `${ns}/${name}` → obj
  const history: Array<{ rv: number; coll: string; ns: string; type: string; object: KObj }> = []
  let oldestRetained = 0
  const watchers = new Set<{ coll: string; ns: string | undefined; labelSelector?: string; fieldName?: string; res: ServerResponse }>()
  const requestLog: RequestLogEntry[] = []
  const failures: Array<{ status: number; method?: string; pathIncludes?: string }> = []
  const serviceHosts = new Map(Object.entries(o.serviceHosts ?? {}))
  const podHosts = new Map<string, string>()
  const byPlural = (plural: string, group?: string): ResourceDef => {
    const r = RESOURCES.find((x) => x.plural === plural && (group === undefined || x.group === group))
    if (!r) throw new ApiError(404, 'NotFound', `the server could not find the requested resource (${plural})`)
    return r
  }
  const coll = (r: ResourceDef): Map<string, KObj> => {
    let m = store.get(collKey(r))
    if (!m) store.set(collKey(r), (m = new Map()))
    return m
  }
  const key = (ns: string | undefined, name: string): string => `${ns ?? ''}/${name}`

  const emit = (r: ResourceDef, type: string, object: KObj): void => {
    const ns = object.metadata.namespace ?? ''
    history.push({ rv: Number(object.metadata.resourceVersion), coll: collKey(r), ns, type, object: clone(object) })
    if (history.length > historyLimit) {
      const dropped = history.splice(0, history.length - historyLimit)
      oldestRetained = dropped[dropped.length - 1]?.rv ?? oldestRetained
    }
    for (const w of watchers) {
      if (w.coll !== collKey(r) || (w.ns !== undefined && w.ns !== ns)) continue
      if (w.labelSelector && !matchLabelSelector(w.labelSelector, object.metadata.labels)) continue
      if (w.fieldName && w.fieldName !== object.metadata.name) continue
      w.res.write(JSON.stringify({ type, object }) + '\n')
    }
  }

  // ---- object lifecycle (used by the HTTP handlers and by the built-in controllers) ----

  const ensureNamespaceExists = (r: ResourceDef, ns: string | undefined): void => {
    if (!r.namespaced) return
    if (!ns) throw new ApiError(400, 'BadRequest', 'namespace required')
    const nsDef = byPlural('namespaces')
    if (coll(nsDef).has(key(undefined, ns))) return
    if (!o.autoCreateNamespaces) throw new ApiError(404, 'NotFound', `namespaces "${ns}" not found`)
    const obj: KObj = {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: ns, uid: randomUUID(), resourceVersion: String(++rv), labels: { 'kubernetes.io/metadata.name': ns }, creationTimestamp: new Date().toISOString() },
    }
    coll(nsDef).set(key(undefined, ns), obj)
    emit(nsDef, 'ADDED', obj)
  }

  const createObject = async (r: ResourceDef, ns: string | undefined, body: KObj, opts: { dryRun?: boolean } = {}): Promise<KObj> => {
    if (!body || typeof body !== 'object' || typeof body.metadata !== 'object') throw new ApiError(400, 'BadRequest', 'body must be an object with metadata')
    ensureNamespaceExists(r, ns)
    let obj = clone(body)
    if (!obj.metadata.name && obj.metadata.generateName) obj.metadata.name = `${obj.metadata.generateName}${randomBytes(3).toString('hex').slice(0, 5)}`
    if (!obj.metadata.name) throw new ApiError(422, 'Invalid', `${r.kind} "" is invalid: metadata.name: Required value`)
    if (r.namespaced && obj.metadata.namespace && obj.metadata.namespace !== ns) {
      throw new ApiError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request')
    }
    if (coll(r).has(key(r.namespaced ? ns : undefined, obj.metadata.name))) {
      throw new ApiError(409, 'AlreadyExists', `${r.plural}${r.group ? '.' + r.group : ''} "${obj.metadata.name}" already exists`)
    }
    if (r.kind === 'Pod') obj = await admit(obj, ns as string, opts.dryRun ?? false)
    obj.apiVersion = apiVersionOf(r)
    obj.kind = r.kind
    obj.metadata = {
      ...obj.metadata,
      ...(r.namespaced ? { namespace: ns } : {}),
      uid: randomUUID(),
      resourceVersion: String(++rv),
      generation: 1,
      creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    }
    if (r.kind === 'Namespace') obj.metadata.labels = { ...(obj.metadata.labels ?? {}), 'kubernetes.io/metadata.name': obj.metadata.name }
    if (opts.dryRun) return obj
    coll(r).set(key(r.namespaced ? ns : undefined, obj.metadata.name), obj)
    emit(r, 'ADDED', obj)
    queueMicrotask(() => void reconcileBuiltins(r, obj).catch(() => undefined))
    return clone(obj)
  }

  const replaceObject = (r: ResourceDef, ns: string | undefined, name: string, next: KObj, checkRv: boolean): KObj => {
    const cur = coll(r).get(key(r.namespaced ? ns : undefined, name))
    if (!cur) throw new ApiError(404, 'NotFound', `${r.plural}${r.group ? '.' + r.group : ''} "${name}" not found`)
    if (checkRv && next.metadata?.resourceVersion && next.metadata.resourceVersion !== cur.metadata.resourceVersion) {
      throw new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${r.plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`)
    }
    if (next.metadata?.name && next.metadata.name !== name) throw new ApiError(400, 'BadRequest', 'the name of the object does not match the name on the URL')
    const specChanged = JSON.stringify(next.spec) !== JSON.stringify(cur.spec)
    const obj: KObj = {
      ...clone(next),
      apiVersion: apiVersionOf(r),
      kind: r.kind,
      metadata: {
        ...clone(next.metadata ?? {}),
        name,
        ...(r.namespaced ? { namespace: ns } : {}),
        uid: cur.metadata.uid,
        creationTimestamp: cur.metadata.creationTimestamp,
        generation: (cur.metadata.generation ?? 1) + (specChanged ? 1 : 0),
        resourceVersion: String(++rv),
      },
    }
    coll(r).set(key(r.namespaced ? ns : undefined, name), obj)
    emit(r, 'MODIFIED', obj)
    if (specChanged) queueMicrotask(() => void reconcileBuiltins(r, obj).catch(() => undefined))
    return clone(obj)
  }

  const deleteObject = (r: ResourceDef, ns: string | undefined, name: string): KObj => {
    const k = key(r.namespaced ? ns : undefined, name)
    const cur = coll(r).get(k)
    if (!cur) throw new ApiError(404, 'NotFound', `${r.plural}${r.group ? '.' + r.group : ''} "${name}" not found`)
    coll(r).delete(k)
    const obj = { ...cur, metadata: { ...cur.metadata, resourceVersion: String(++rv) } }
    emit(r, 'DELETED', obj)
    // Background garbage collection of dependents (ownerReferences by uid).
    setImmediate(() => collectGarbage(cur.metadata.uid as string))
    return clone(obj)
  }

  const collectGarbage = (ownerUid: string): void => {
    for (const r of RESOURCES) {
      for (const obj of [...coll(r).values()]) {
        if (obj.metadata.ownerReferences?.some((ref) => ref.uid === ownerUid)) {
          try {
            deleteObject(r, obj.metadata.namespace, obj.metadata.name)
          } catch {
            /* already gone */
          }
        }
      }
    }
  }

  // ---- built-in controllers: Deployment → ReplicaSet → Pods, StatefulSet → Pods ----

  const ownerRef = (r: ResourceDef, obj: KObj) => ({ apiVersion: apiVersionOf(r), kind: r.kind, name: obj.metadata.name, uid: obj.metadata.uid as string, controller: true, blockOwnerDeletion: true })

  const reconcileBuiltins = async (r: ResourceDef, obj: KObj): Promise<void> => {
    const ns = obj.metadata.namespace as string
    const spec = (obj.spec ?? {}) as { replicas?: number; template?: { metadata?: Partial<KMeta>; spec?: unknown } }
    if (r.kind === 'Deployment') {
      const rsDef = byPlural('replicasets')
      const hash = createHash('sha256').update(JSON.stringify(spec.template ?? {})).digest('hex').slice(0, 10)
      const rsName = `${obj.metadata.name}-${hash}`
      for (const rs of [...coll(rsDef).values()]) {
        if (rs.metadata.namespace === ns && rs.metadata.ownerReferences?.some((x) => x.uid === obj.metadata.uid) && rs.metadata.name !== rsName) {
          deleteObject(rsDef, ns, rs.metadata.name) // old template: its pods go with it (GC)
        }
      }
      const existing = coll(rsDef).get(key(ns, rsName))
      const replicas = spec.replicas ?? 1
      if (!existing) {
        await createObject(rsDef, ns, {
          metadata: { name: rsName, labels: { ...(spec.template?.metadata?.labels ?? {}) }, ownerReferences: [ownerRef(r, obj)] },
          spec: { replicas, template: spec.template },
        })
      } else if ((existing.spec as { replicas?: number }).replicas !== replicas) {
        replaceObject(rsDef, ns, rsName, { ...existing, spec: { ...(existing.spec as object), replicas } }, false)
      }
    } else if (r.kind === 'ReplicaSet' || r.kind === 'StatefulSet') {
      const podDef = byPlural('pods')
      const replicas = spec.replicas ?? 1
      const mine = [...coll(podDef).values()].filter((p) => p.metadata.namespace === ns && p.metadata.ownerReferences?.some((x) => x.uid === obj.metadata.uid))
      for (let i = mine.length; i < replicas; i++) {
        const name = r.kind === 'StatefulSet' ? `${obj.metadata.name}-${i}` : `${obj.metadata.name}-${randomBytes(3).toString('hex').slice(0, 5)}`
        try {
          await createObject(podDef, ns, {
            apiVersion: 'v1',
            kind: 'Pod',
            metadata: { ...clone(spec.template?.metadata ?? {}), name, ownerReferences: [ownerRef(r, obj)] } as KMeta,
            spec: clone(spec.template?.spec ?? {}),
          })
        } catch (err) {
          // Like the ReplicaSet controller: a FailedCreate event, no pod.
          await createObject(byPlural('events'), ns, {
            metadata: { name: `${obj.metadata.name}.${randomBytes(4).toString('hex')}` },
            involvedObject: { kind: r.kind, name: obj.metadata.name, namespace: ns, uid: obj.metadata.uid },
            reason: 'FailedCreate',
            type: 'Warning',
            message: `Error creating: ${(err as Error).message}`,
          }).catch(() => undefined)
          return
        }
      }
      for (const p of mine.slice(replicas)) deleteObject(podDef, ns, p.metadata.name)
    }
  }

  // ---- admission ----

  const admit = async (pod: KObj, ns: string, dryRun: boolean): Promise<KObj> => {
    const mwcDef = byPlural('mutatingwebhookconfigurations')
    const nsObj = coll(byPlural('namespaces')).get(key(undefined, ns))
    let current = pod
    const configs = [...coll(mwcDef).values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
    for (const cfg of configs) {
      for (const wh of (cfg.webhooks as Array<Record<string, any>>) ?? []) {
        const rules = (wh.rules as Array<{ apiGroups?: string[]; apiVersions?: string[]; operations?: string[]; resources?: string[] }>) ?? []
        const ruleMatch = rules.some(
          (rule) =>
            (rule.apiGroups ?? []).some((g) => g === '' || g === '*') &&
            (rule.operations ?? []).some((op) => op === 'CREATE' || op === '*') &&
            (rule.resources ?? []).some((res) => res === 'pods' || res === '*'),
        )
        if (!ruleMatch) continue
        if (!matchSelectorObject(wh.objectSelector, current.metadata.labels)) continue
        if (!matchSelectorObject(wh.namespaceSelector, nsObj?.metadata.labels ?? { 'kubernetes.io/metadata.name': ns })) continue
        if (dryRun && wh.sideEffects !== 'None' && wh.sideEffects !== 'NoneOnDryRun') {
          throw new ApiError(400, 'BadRequest', `admission webhook "${wh.name}" does not support dry run`)
        }
        const failurePolicy = wh.failurePolicy ?? 'Fail'
        let response: { allowed?: boolean; patch?: string; patchType?: string; status?: { code?: number; message?: string }; uid?: string } | undefined
        try {
          response = await callWebhook(wh, current, ns, dryRun)
        } catch (err) {
          if (failurePolicy === 'Ignore') continue
          throw new ApiError(500, 'InternalError', `Internal error occurred: failed calling webhook "${wh.name}": ${(err as Error).message}`)
        }
        if (!response?.allowed) {
          const code = Math.max(400, response?.status?.code ?? 400)
          throw new ApiError(code, code === 403 ? 'Forbidden' : 'BadRequest', `admission webhook "${wh.name}" denied the request: ${response?.status?.message ?? 'without explanation'}`)
        }
        if (response.patch) {
          if (response.patchType !== 'JSONPatch') throw new ApiError(500, 'InternalError', `admission webhook "${wh.name}" returned an unsupported patchType`)
          const ops = JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as fjp.Operation[]
          current = fjp.applyPatch(clone(current), ops, true, false).newDocument
        }
      }
    }
    return current
  }

  const callWebhook = (wh: Record<string, any>, pod: KObj, ns: string, dryRun: boolean): Promise<{ allowed?: boolean; patch?: string; patchType?: string; status?: { code?: number; message?: string } }> => {
    const cc = wh.clientConfig as { url?: string; service?: { name: string; namespace: string; path?: string; port?: number }; caBundle?: string }
    let host: string
    let port: number
    let path: string
    let servername: string
    if (cc.url) {
      const u = new URL(cc.url)
      host = u.hostname
      port = Number(u.port || 443)
      path = u.pathname + u.search
      servername = u.hostname
    } else if (cc.service) {
      servername = `${cc.service.name}.${cc.service.namespace}.svc`
      const svcPort = cc.service.port ?? 443
      const target = serviceHosts.get(`${servername}:${svcPort}`)
      if (!target) return Promise.reject(new Error(`dial tcp: lookup ${servername}: no such host`))
      const i = target.lastIndexOf(':')
      host = target.slice(0, i)
      port = Number(target.slice(i + 1))
      path = cc.service.path ?? '/'
    } else return Promise.reject(new Error('webhook has no clientConfig'))
    const uid = randomUUID()
    const review = {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid,
        kind: { group: '', version: 'v1', kind: 'Pod' },
        resource: { group: '', version: 'v1', resource: 'pods' },
        requestKind: { group: '', version: 'v1', kind: 'Pod' },
        requestResource: { group: '', version: 'v1', resource: 'pods' },
        name: pod.metadata.name,
        namespace: ns,
        operation: 'CREATE',
        userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller', groups: ['system:serviceaccounts', 'system:authenticated'] },
        object: pod,
        oldObject: null,
        dryRun,
        options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
      },
    }
    const body = Buffer.from(JSON.stringify(review))
    const timeoutMs = (wh.timeoutSeconds ?? 10) * 1000
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host,
          port,
          path,
          method: 'POST',
          servername,
          // The API server trusts exactly the caBundle of the webhook configuration.
          ...(cc.caBundle ? { ca: Buffer.from(cc.caBundle, 'base64').toString('utf8') } : {}),
          headers: { 'content-type': 'application/json', accept: 'application/json', 'content-length': body.length },
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => {
            try {
              const out = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { response?: { uid?: string; allowed?: boolean } }
              if ((res.statusCode ?? 0) >= 400) return reject(new Error(`the server responded with status ${res.statusCode}`))
              if (!out.response || out.response.uid !== uid) return reject(new Error('webhook response uid does not match the request'))
              resolve(out.response)
            } catch (err) {
              reject(new Error(`cannot decode the webhook response: ${(err as Error).message}`))
            }
          })
        },
      )
      req.on('timeout', () => req.destroy(new Error(`context deadline exceeded (timeoutSeconds ${wh.timeoutSeconds ?? 10})`)))
      req.on('error', reject)
      req.end(body)
    })
  }

  // ---- HTTP ----

  const send = (res: ServerResponse, code: number, body: unknown): void => {
    res.writeHead(code, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body))
  }

  const discovery = (path: string): unknown | undefined => {
    if (path === '/version') return { major: '1', minor: '32', gitVersion: 'v1.32.0-asya-test', platform: 'linux/amd64' }
    if (path === '/api') return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1' }] }
    const resourceList = (group: string, version: string) => ({
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: group === '' ? version : `${group}/${version}`,
      resources: RESOURCES.filter((r) => r.group === group && r.version === version).map((r) => ({
        name: r.plural,
        singularName: r.kind.toLowerCase(),
        namespaced: r.namespaced,
        kind: r.kind,
        verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
      })),
    })
    if (path === '/api/v1') return resourceList('', 'v1')
    if (path === '/apis') {
      const groups = [...new Set(RESOURCES.filter((r) => r.group !== '').map((r) => `${r.group}/${r.version}`))]
      return {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: groups.map((gv) => {
          const [name, version] = gv.split('/') as [string, string]
          return { name, versions: [{ groupVersion: gv, version }], preferredVersion: { groupVersion: gv, version } }
        }),
      }
    }
    const m = /^\/apis\/([^/]+)\/([^/]+)$/.exec(path)
    if (m && RESOURCES.some((r) => r.group === m[1] && r.version === m[2])) return resourceList(m[1] as string, m[2] as string)
    return undefined
  }

  const handle = async (req: IncomingMessage, res: ServerResponse, bodyText: string): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://x')
    const method = req.method ?? 'GET'
    const path = url.pathname.replace(/\/+$/, '') || '/'
    const d = method === 'GET' ? discovery(path) : undefined
    if (d !== undefined) return send(res, 200, d)
    const proxy = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/:%]+)(?::|%3[Aa])?(\d+)?\/proxy(\/.*)?$/.exec(path)
    if (proxy && method === 'GET') {
      const [, pns, pod, port = '80', rest = '/'] = proxy as unknown as [string, string, string, string | undefined, string | undefined]
      if (!coll(byPlural('pods')).get(key(pns, pod))) return send(res, 404, statusBody(404, 'NotFound', `pods "${pod}" not found`))
      const target = podHosts.get(`${pns}/${pod}:${port}`)
      if (!target) return send(res, 503, statusBody(503, 'ServiceUnavailable', `error trying to reach service: pod ${pns}/${pod} has no address for port ${port}`))
      try {
        const upstream = await fetch(`http://${target}${rest}${url.search}`)
        res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'text/plain' })
        res.end(Buffer.from(await upstream.arrayBuffer()))
      } catch (err) {
        send(res, 503, statusBody(503, 'ServiceUnavailable', `error trying to reach service: ${(err as Error).message}`))
      }
      return
    }
    if (path === '/openapi/v2' || path.startsWith('/openapi/v3')) return send(res, 404, statusBody(404, 'NotFound', 'openapi is not served by the test server (use --validate=false)'))
    const m = /^(?:\/api\/(v1)|\/apis\/([^/]+)\/([^/]+))(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?(?:\/(status|scale))?$/.exec(path)
    if (!m) return send(res, 404, statusBody(404, 'NotFound', 'the server could not find the requested resource'))
    const group = m[1] ? '' : (m[2] as string)
    const ns = m[4]
    const plural = m[5] as string
    const name = m[6]
    const r = byPlural(plural, group)
    const scopeNs = r.namespaced ? ns : undefined
    let body: KObj | undefined
    if ((req.headers['content-type'] ?? '').includes('protobuf')) {
      // kubectl's typed generators (`kubectl create namespace x`) speak protobuf; manifests
      // (`kubectl apply -f`) and every client library we use speak JSON.
      throw new ApiError(415, 'UnsupportedMediaType', 'the test API server accepts JSON only (use kubectl apply -f / create -f with a manifest)')
    }
    if (bodyText !== '') {
      try {
        body = JSON.parse(bodyText) as KObj
      } catch {
        throw new ApiError(400, 'BadRequest', 'the request body is not valid JSON')
      }
    }
    const dryRun = url.searchParams.get('dryRun') === 'All'
    if (method === 'GET' && name === undefined) {
      const labelSelector = url.searchParams.get('labelSelector') ?? undefined
      const fieldSelector = url.searchParams.get('fieldSelector') ?? ''
      const fieldName = /metadata\.name=([^,]+)/.exec(fieldSelector)?.[1]
      const fieldNs = /metadata\.namespace=([^,]+)/.exec(fieldSelector)?.[1]
      const effNs = scopeNs ?? fieldNs
      const watch = ['1', 'true'].includes(url.searchParams.get('watch') ?? '')
      const pick = (obj: KObj): boolean =>
        (effNs === undefined || obj.metadata.namespace === effNs) &&
        (!labelSelector || matchLabelSelector(labelSelector, obj.metadata.labels)) &&
        (!fieldName || obj.metadata.name === fieldName)
      if (watch) {
        res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' })
        res.flushHeaders()
        const since = url.searchParams.get('resourceVersion')
        if (since === null || since === '' || since === '0') {
          for (const obj of coll(r).values()) if (pick(obj)) res.write(JSON.stringify({ type: 'ADDED', object: obj }) + '\n')
        } else if (Number(since) < oldestRetained) {
          res.write(JSON.stringify({ type: 'ERROR', object: statusBody(410, 'Expired', `too old resource version: ${since} (${oldestRetained})`) }) + '\n')
          res.end()
          return
        } else {
          for (const h of history) if (h.rv > Number(since) && h.coll === collKey(r) && pick(h.object)) res.write(JSON.stringify({ type: h.type, object: h.object }) + '\n')
        }
        const w = { coll: collKey(r), ns: effNs, ...(labelSelector ? { labelSelector } : {}), ...(fieldName ? { fieldName } : {}), res }
        watchers.add(w)
        req.socket.on('close', () => watchers.delete(w))
        const timeoutSeconds = Number(url.searchParams.get('timeoutSeconds') ?? '0')
        if (timeoutSeconds > 0) {
          setTimeout(() => {
            watchers.delete(w)
            res.end()
          }, timeoutSeconds * 1000).unref()
        }
        return
      }
      const items = [...coll(r).values()].filter(pick)
      return send(res, 200, { kind: `${r.kind}List`, apiVersion: apiVersionOf(r), metadata: { resourceVersion: String(rv) }, items })
    }
    if (method === 'POST' && name === undefined) {
      return send(res, 201, await createObject(r, scopeNs, body as KObj, { dryRun }))
    }
    if (name === undefined) throw new ApiError(405, 'MethodNotAllowed', `${method} is not supported on a collection`)
    const cur = coll(r).get(key(scopeNs, name))
    if (method === 'GET') {
      if (!cur) throw new ApiError(404, 'NotFound', `${r.plural}${r.group ? '.' + r.group : ''} "${name}" not found`)
      return send(res, 200, cur)
    }
    if (method === 'DELETE') return send(res, 200, deleteObject(r, scopeNs, name))
    if (method === 'PUT') return send(res, 200, replaceObject(r, scopeNs, name, body as KObj, true))
    if (method === 'PATCH') {
      if (!cur) throw new ApiError(404, 'NotFound', `${r.plural}${r.group ? '.' + r.group : ''} "${name}" not found`)
      const ct = (req.headers['content-type'] ?? '').split(';')[0]?.trim()
      let next: KObj
      if (ct === 'application/json-patch+json') {
        try {
          next = fjp.applyPatch(clone(cur), body as unknown as fjp.Operation[], true, false).newDocument
        } catch (err) {
          throw new ApiError(422, 'Invalid', `the JSON patch cannot be applied: ${(err as Error).message}`)
        }
      } else if (ct === 'application/merge-patch+json' || ct === 'application/strategic-merge-patch+json') {
        next = mergePatch(cur, body) as KObj
      } else throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`)
      // A patch carrying metadata.resourceVersion is a precondition, like the real server.
      return send(res, 200, replaceObject(r, scopeNs, name, next, true))
    }
    throw new ApiError(405, 'MethodNotAllowed', `${method} is not supported`)
  }

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x')
      const method = req.method ?? 'GET'
      const watch = ['1', 'true'].includes(url.searchParams.get('watch') ?? '')
      res.on('finish', () => requestLog.push({ method: watch ? 'WATCH' : method, path: url.pathname, status: res.statusCode }))
      const fi = failures.findIndex((f) => (!f.method || f.method === method) && (!f.pathIncludes || url.pathname.includes(f.pathIncludes)))
      if (fi >= 0 && !watch) {
        const f = failures.splice(fi, 1)[0] as { status: number }
        return send(res, f.status, statusBody(f.status, f.status === 409 ? 'Conflict' : f.status === 404 ? 'NotFound' : 'InternalError', 'injected failure'))
      }
      handle(req, res, Buffer.concat(chunks).toString('utf8')).catch((err: unknown) => {
        if (err instanceof ApiError) send(res, err.code, statusBody(err.code, err.reason, err.message))
        else send(res, 500, statusBody(500, 'InternalError', (err as Error).message))
      })
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  for (const n of ['default', 'kube-system', 'kube-public', 'kube-node-lease']) await createObject(byPlural('namespaces'), undefined, { metadata: { name: n } })
  const kubeConfig = new KubeConfig()
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'asya-test', server: url, skipTLSVerify: true }],
    users: [{ name: 'asya-test', token: 'asya-test-token' }],
    contexts: [{ name: 'asya-test', cluster: 'asya-test', user: 'asya-test', namespace: 'default' }],
    currentContext: 'asya-test',
  })
  return {
    url,
    kubeConfig,
    requestLog,
    failNext(status, match = {}) {
      failures.push({ status, ...match })
    },
    get(plural, namespace, name, group) {
      const r = byPlural(plural, group)
      const obj = coll(r).get(key(r.namespaced ? namespace : undefined, name))
      return obj ? clone(obj) : undefined
    },
    list(plural, namespace, group) {
      const r = byPlural(plural, group)
      return [...coll(r).values()].filter((x) => namespace === undefined || x.metadata.namespace === namespace).map(clone)
    },
    compactHistory() {
      oldestRetained = rv
      history.length = 0
    },
    setServiceHost(service, hostPort) {
      serviceHosts.set(service, hostPort)
    },
    setPodHost(namespace, pod, port, hostPort) {
      podHosts.set(`${namespace}/${pod}:${port}`, hostPort)
    },
    async close() {
      for (const w of watchers) w.res.end()
      watchers.clear()
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}
