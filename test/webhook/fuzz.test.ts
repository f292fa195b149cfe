/**
 * 10,000 random and mutated AdmissionReviews over HTTPS: no crash, no 5xx, every 200 a valid
 * AdmissionReview for the request's uid whose patch (if any) applies to the object, every 4xx
 * a JSON message. Seeded, so a failure can be replayed with FUZZ_SEED.
 */
import t from 'tap'
import { Agent } from 'node:https'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import fastJsonPatch from 'fast-json-patch'
import { admissionReview, certs, post, startServer, webhookConfig } from './helpers.js'

const N = Number(process.env.FUZZ_N ?? 10_000)
const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000)
let state = seed
function rand(): number {
  // mulberry32
  state = (state + 0x6d2b79f5) | 0
  let x = Math.imul(state ^ (state >>> 15), 1 | state)
  x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
  return ((x ^ (x >>> 14)) >>> 0) / 4294967296
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T

const goldenDir = join(dirname(fileURLToPath(import.meta.url)), 'golden')
const pods = readdirSync(goldenDir)
  .filter((f) => f.endsWith('.input.json'))
  .map((f) => (JSON.parse(readFileSync(join(goldenDir, f), 'utf8')) as { pod: unknown }).pod)

const annotationKeys = ['asya.sh/transport', 'asya.sh/handler', 'asya.sh/handler-mode', 'asya.sh/timeout', 'asya.sh/max-retries', 'asya.sh/retry-backoff', 'asya.sh/native-sidecar', 'asya.sh/runtime-container', 'asya.sh/runtime-command', 'asya.sh/injected']
function randomValue(depth = 0): unknown {
  switch (Math.floor(rand() * (depth > 2 ? 6 : 8))) {
    case 0: return null
    case 1: return rand() < 0.5
    case 2: return Math.floor(rand() * 2e9) - 1e9
    case 3: return pick(['', 'true', 'false', '300', '-1', '5m', 'sqs', 'kafka', 'asya-runtime', 'envelope', 'a.b', '\u0000', '😀', 'x'.repeat(300)])
    case 4: return rand() * 1e6
    case 5: return pick(['asya-sidecar', 'handler', 'Pod', 'CREATE'])
    case 6: return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(depth + 1))
    default: return Object.fromEntries(Array.from({ length: Math.floor(rand() * 4) }, () => [pick(['name', 'spec', 'containers', 'metadata', 'labels', 'x', 'asya.sh/actor', ...annotationKeys]), randomValue(depth + 1)]))
  }
}

/** Replaces/deletes a random node of the document. */
function mutate(doc: unknown): unknown {
  if (rand() < 0.05) return randomValue()
  let node = doc
  for (let depth = 0; depth < 12; depth++) {
    if (typeof node !== 'object' || node === null) break
    const keys = Object.keys(node)
    if (keys.length === 0) break
    const k = pick(keys)
    const child = (node as Record<string, unknown>)[k]
    if (rand() < 0.3 || typeof child !== 'object' || child === null) {
      const r = rand()
      if (r < 0.3 && !Array.isArray(node)) delete (node as Record<string, unknown>)[k]
      else (node as Record<string, unknown>)[k] = randomValue()
      break
    }
    node = child
  }
  return doc
}

function makeBody(): { body: string; contentType: string; review?: Record<string, unknown> } {
  const r = rand()
  if (r < 0.03) return { body: Buffer.from(Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 256))).toString('latin1'), contentType: 'application/json' }
  if (r < 0.05) return { body: '{"a":1}', contentType: pick(['text/plain', 'application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) }
  const pod = structuredClone(pick(pods)) as Record<string, unknown>
  const meta = (pod.metadata ?? {}) as Record<string, unknown>
  if (rand() < 0.5 && typeof meta === 'object' && meta !== null) {
    const ann = (meta.annotations ?? (meta.annotations = {})) as Record<string, unknown>
    if (typeof ann === 'object' && ann !== null) ann[pick(annotationKeys)] = randomValue(3)
  }
  const review = admissionReview(pod, {
    operation: pick(['CREATE', 'CREATE', 'CREATE', 'UPDATE', 'DELETE', 'CONNECT', 7]),
    namespace: pick(['team-a', 'kube-system', '', 'asya-system', undefined, 3]),
    dryRun: pick([true, false, 'yes']),
  })
  let doc: unknown = review
  const mutations = Math.floor(rand() * 4)
  // Mostly below `request`: a broken envelope is one 400 path, the pod is where the variety is.
  for (let i = 0; i < mutations; i++) {
    if (rand() < 0.15) doc = mutate(doc)
    else {
      const req = review.request as Record<string, unknown> | null | undefined
      if (typeof req === 'object' && req !== null) mutate(rand() < 0.3 ? req : req.object)
    }
  }
  let body = JSON.stringify(doc) ?? 'null'
  if (rand() < 0.03) body = body.slice(0, Math.floor(rand() * body.length))
  return { body, contentType: 'application/json', review: doc as Record<string, unknown> }
}

t.test(`fuzz: ${N} AdmissionReviews (seed ${seed})`, async (t) => {
  const c = await certs()
  const { server, url } = await startServer(webhookConfig(c.files, { bodyLimit: 1024 * 1024 }))
  t.teardown(() => server.close())
  const agent = new Agent({ keepAlive: true, maxSockets: 16 })
  t.teardown(() => agent.destroy())
  const failures: string[] = []
  const counts: Record<string, number> = {}
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < N && failures.length < 10) {
      next++
      const { body, contentType, review } = makeBody()
      const r = await post(url, body, { ca: c.caCert, contentType, agent })
      const outcome = r.status === 200 ? check200(r.body, review) : check4xx(r.status, r.body)
      counts[outcome.split(':')[0] as string] = (counts[outcome.split(':')[0] as string] ?? 0) + 1
      if (outcome.startsWith('FAIL')) failures.push(`${outcome} <- ${body.slice(0, 300)}`)
    }
  }
  await Promise.all(Array.from({ length: 16 }, worker))
  t.same(failures, [], `no invalid answers (seed ${seed})`)
  t.ok((counts.injected ?? 0) > 100 && (counts.allowed ?? 0) > 100 && (counts.denied ?? 0) > 100 && (counts['4xx'] ?? 0) > 100, `all outcomes exercised: ${JSON.stringify(counts)}`)
  t.ok(server.isReady(), 'server still up')
})

function check200(text: string, review: Record<string, unknown> | undefined): string {
  let out: { apiVersion?: unknown; kind?: unknown; response?: { uid?: unknown; allowed?: unknown; patch?: unknown; patchType?: unknown; status?: { message?: unknown } } }
  try {
    out = JSON.parse(text) as typeof out
  } catch {
    return 'FAIL: 200 with non-JSON body'
  }
  if (out.apiVersion !== 'admission.k8s.io/v1' || out.kind !== 'AdmissionReview' || typeof out.response !== 'object') return 'FAIL: not an AdmissionReview'
  const req = (review?.request ?? {}) as { uid?: unknown; object?: unknown }
  if (out.response.uid !== req.uid) return 'FAIL: uid not echoed'
  if (typeof out.response.allowed !== 'boolean') return 'FAIL: allowed not boolean'
  if (out.response.allowed === false) return typeof out.response.status?.message === 'string' ? 'denied' : 'FAIL: denial without message'
  if (out.response.patch === undefined) return 'allowed'
  if (out.response.patchType !== 'JSONPatch' || typeof out.response.patch !== 'string') return 'FAIL: bad patchType'
  try {
    const ops = JSON.parse(Buffer.from(out.response.patch, 'base64').toString('utf8')) as fastJsonPatch.Operation[]
    fastJsonPatch.applyPatch(structuredClone(req.object), ops, true, false)
  } catch (err) {
    return `FAIL: patch does not apply: ${String(err)}`
  }
  return 'injected'
}

function check4xx(status: number, text: string): string {
  if (status < 400 || status >= 500) return `FAIL: status ${status}`
  try {
    const m = (JSON.parse(text) as { message?: unknown }).message
    return typeof m === 'string' && m !== '' ? '4xx' : 'FAIL: 4xx without message'
  } catch {
    return 'FAIL: 4xx with non-JSON body'
  }
}
