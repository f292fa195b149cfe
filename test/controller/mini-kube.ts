/**
 * A minimal in-process Kubernetes REST server (CRUD + merge patch + watch, optimistic
 * concurrency) used by the controller tests while the shared test server (test/k8s/) is not
 * available. Same surface subset: url, kubeConfig, requestLog, failNext, stop.
 */
import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { KubeConfig } from '@kubernetes/client-node'

type Obj = { metadata: Record<string, any>; [k: string]: any }
export interface RequestLogEntry {
  method: string
  path: string
  status: number
}

function mergePatch(target: any, patch: any): any {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch
  const out = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...target } : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k], v)
  }
  return out
}

export async function startMiniKube() {
  let rv = 1
  // collection key: `${apiPrefix}/${plural}` → ns → name → obj
  const store = new Map<string, Map<string, Obj>>()
  const history: Array<{ rv: number; coll: string; ns: string; type: string; object: Obj }> = []
  const watchers = new Set<{ coll: string; ns: string | undefined; res: ServerResponse }>()
  const requestLog: RequestLogEntry[] = []
  const failures: Array<{ status: number; method?: string; pathIncludes?: string }> = []

  const send = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body))
  }
  const status = (code: number, reason: string, message: string) => ({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason, message })
  const emit = (coll: string, ns: string, type: string, object: Obj): void => {
    history.push({ rv: Number(object.metadata.resourceVersion), coll, ns, type, object })
    for (const w of watchers) if (w.coll === coll && (w.ns === undefined || w.ns === ns)) w.res.write(JSON.stringify({ type, object }) + '\n')
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x')
      const method = req.method ?? 'GET'
      const watch = url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1'
      const origEnd = res.end.bind(res)
      res.end = ((...args: any[]) => {
        requestLog.push({ method: watch ? 'WATCH' : method, path: url.pathname, status: res.statusCode })
        return origEnd(...args)
      }) as typeof res.end
      const fi = failures.findIndex((f) => (!f.method || f.method === method) && (!f.pathIncludes || url.pathname.includes(f.pathIncludes)))
      if (fi >= 0 && !watch) {
        const f = failures.splice(fi, 1)[0]!
        return send(res, f.status, status(f.status, f.status === 409 ? 'Conflict' : 'InternalError', 'injected failure'))
      }
      const m = /^(\/api\/v1|\/apis\/[^/]+\/[^/]+)(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?$/.exec(url.pathname)
      if (!m) return send(res, 404, status(404, 'NotFound', 'no route'))
      const [, prefix, ns, plural, name] = m
      if (plural === 'namespaces' && !ns) return send(res, 200, { kind: 'Namespace', metadata: { name } })
      const coll = `${prefix}/${plural}`
      if (!store.has(coll)) store.set(coll, new Map())
      const objects = store.get(coll)!
      const k = (n: string, o: string | undefined) => `${o ?? ''}/${n}`
      let body: any
      try {
        body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined
      } catch {
        return send(res, 400, status(400, 'BadRequest', 'bad json'))
      }
      if (method === 'GET' && !name) {
        if (watch) {
          res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' })
          res.flushHeaders()
          const since = Number(url.searchParams.get('resourceVersion') ?? '0')
          for (const h of history) if (h.rv > since && h.coll === coll && (ns === undefined || h.ns === ns)) res.write(JSON.stringify({ type: h.type, object: h.object }) + '\n')
          const w = { coll, ns, res }
          watchers.add(w)
          req.socket.on('close', () => watchers.delete(w))
          return
        }
        const items = [...objects.entries()].filter(([key]) => ns === undefined || key.startsWith(`${ns}/`)).map(([, o]) => o)
        return send(res, 200, { kind: 'List', apiVersion: 'v1', metadata: { resourceVersion: String(rv) }, items })
      }
      if (method === 'POST' && !name) {
        const n = body?.metadata?.name
        if (!n) return send(res, 422, status(422, 'Invalid', 'name required'))
        if (objects.has(k(n, ns))) return send(res, 409, status(409, 'AlreadyExists', `${plural} "${n}" already exists`))
        const obj: Obj = { ...body, metadata: { ...body.metadata, namespace: ns, uid: randomUUID(), resourceVersion: String(++rv), creationTimestamp: new Date().toISOString(), generation: 1 } }
        objects.set(k(n, ns), obj)
        emit(coll, ns ?? '', 'ADDED', obj)
        return send(res, 201, obj)
      }
      if (!name) return send(res, 405, status(405, 'MethodNotAllowed', method))
      const cur = objects.get(k(name, ns))
      if (!cur) return send(res, 404, status(404, 'NotFound', `${plural} "${name}" not found`))
      if (method === 'GET') return send(res, 200, cur)
      if (method === 'DELETE') {
        objects.delete(k(name, ns))
        const obj = { ...cur, metadata: { ...cur.metadata, resourceVersion: String(++rv) } }
        emit(coll, ns ?? '', 'DELETED', obj)
        return send(res, 200, obj)
      }
      if (method === 'PUT' || method === 'PATCH') {
        let next: Obj
        if (method === 'PUT') {
          if (body?.metadata?.resourceVersion && body.metadata.resourceVersion !== cur.metadata.resourceVersion) {
            return send(res, 409, status(409, 'Conflict', 'the object has been modified'))
          }
          next = body
        } else next = mergePatch(cur, body)
        next = { ...next, metadata: { ...next.metadata, name, namespace: ns, uid: cur.metadata.uid, creationTimestamp: cur.metadata.creationTimestamp, resourceVersion: String(++rv) } }
        objects.set(k(name, ns), next)
        emit(coll, ns ?? '', 'MODIFIED', next)
        return send(res, 200, next)
      }
      return send(res, 405, status(405, 'MethodNotAllowed', method))
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const kubeConfig = new KubeConfig()
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'mini', server: url, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'x' }],
    contexts: [{ name: 'mini', cluster: 'mini', user: 'u' }],
    currentContext: 'mini',
  })
  return {
    url,
    kubeConfig,
    requestLog,
    failNext(status: number, match: { method?: string; pathIncludes?: string } = {}): void {
      failures.push({ status, ...match })
    },
    async stop(): Promise<void> {
      for (const w of watchers) w.res.end()
      watchers.clear()
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}
