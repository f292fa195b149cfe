/**
 * `asya inject`: applies the webhook's injection to the pod templates of a manifest, for GitOps
 * diffs. The JSON Patch of injectPod is applied to the YAML document itself (not a re-dump of
 * parsed data), so comments, key order and formatting of the user's file survive.
 */
import { isMap, isSeq, parseAllDocuments, type Document } from 'yaml'
import { injectPod, type Operation } from '../../webhook/inject.js'
import type { InjectionConfig } from '../system/config.js'

export interface ManifestResult {
  output: string
  /** `<Kind>/<name>: message` per denied object. */
  errors: string[]
  /** `<Kind>/<name>: warning` lines. */
  warnings: string[]
  injected: string[]
}

type Path = (string | number)[]

/** Where the pod (template) sits in each workload kind. */
function templatePath(kind: unknown): Path | undefined {
  switch (kind) {
    case 'Pod':
      return []
    case 'Deployment':
    case 'StatefulSet':
    case 'DaemonSet':
    case 'ReplicaSet':
    case 'Job':
    case 'ReplicationController':
      return ['spec', 'template']
    case 'CronJob':
      return ['spec', 'jobTemplate', 'spec', 'template']
    default:
      return undefined
  }
}

function decodePointer(path: string): Path {
  return path
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((p) => (/^\d+$/.test(p) ? Number(p) : p))
}

function applyToDocument(doc: Document, base: Path, ops: readonly Operation[]): void {
  for (const op of ops) {
    const path = [...base, ...decodePointer(op.path)]
    if (op.op === 'remove') {
      doc.deleteIn(path)
      continue
    }
    if (op.op !== 'add' && op.op !== 'replace') throw new Error(`unexpected patch operation ${op.op}`)
    const parentPath = path.slice(0, -1)
    const last = path[path.length - 1]
    const parent = parentPath.length === 0 ? doc.contents : doc.getIn(parentPath, true)
    if (isSeq(parent) && typeof last === 'number' && op.op === 'add') {
      if (last >= parent.items.length) parent.items.push(doc.createNode(op.value))
      else parent.items.splice(last, 0, doc.createNode(op.value))
      continue
    }
    if (parentPath.length > 0 && !isMap(parent) && !isSeq(parent)) doc.setIn(parentPath, {})
    doc.setIn(path, doc.createNode(op.value))
  }
}

export function injectManifest(text: string, config: InjectionConfig, defaultNamespace = 'default'): ManifestResult {
  const docs = parseAllDocuments(text)
  const result: ManifestResult = { output: '', errors: [], warnings: [], injected: [] }
  const out: string[] = []
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      result.errors.push(`YAML: ${doc.errors.map((e) => e.message).join('; ')}`)
      out.push(String(doc))
      continue
    }
    const js = doc.toJS() as Record<string, unknown> | null
    const base = js === null || typeof js !== 'object' ? undefined : templatePath(js.kind)
    if (js === null || base === undefined) {
      out.push(String(doc))
      continue
    }
    const meta = (js.metadata ?? {}) as { name?: string; namespace?: string }
    const label = `${String(js.kind)}/${meta.name ?? '?'}`
    let target: unknown = js
    for (const k of base) target = (target as Record<string | number, unknown> | undefined)?.[k]
    const pod = base.length === 0 ? js : { metadata: (target as Record<string, unknown> | undefined)?.metadata ?? {}, spec: (target as Record<string, unknown> | undefined)?.spec ?? {} }
    const r = injectPod(pod, { config, namespace: meta.namespace ?? defaultNamespace })
    if (r.kind === 'denied') result.errors.push(`${label}: ${r.message}`)
    else if (r.kind === 'skipped') {
      if (r.reason !== 'no_actor_label') result.warnings.push(`${label}: not injected (${r.reason})${r.warnings.length ? `: ${r.warnings.join('; ')}` : ''}`)
    } else {
      applyToDocument(doc, base, r.patch)
      result.injected.push(label)
      for (const w of r.warnings) result.warnings.push(`${label}: ${w}`)
    }
    out.push(String(doc))
  }
  result.output = out
    .map((s, i) => {
      const body = s.replace(/\n*$/, '\n')
      return i === 0 || /^---/.test(body) ? body : `---\n${body}`
    })
    .join('')
  return result
}
