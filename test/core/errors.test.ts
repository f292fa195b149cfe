import t from 'tap'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { AsyaError, errors, isAsyaError, errorMessage, type AsyaErrorCode } from '../../src/errors.js'

const root = new URL('../../', import.meta.url).pathname

/** The `| code | meaning | ... |` rows of docs/errors.md. */
function documented(): Map<string, string> {
  const doc = readFileSync(join(root, 'docs/errors.md'), 'utf8')
  const rows = new Map<string, string>()
  for (const m of doc.matchAll(/^\| `(ASYA_ERR_[A-Z0-9_]+)` \| ([^|]+) \|/gm)) rows.set(m[1] as string, (m[2] as string).trim())
  return rows
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) return name === 'node_modules' ? [] : sourceFiles(p)
    return /\.(ts|mjs|py)$/.test(name) ? [p] : []
  })
}

t.test('every catalog code is documented in docs/errors.md with its meaning', async (t) => {
  const rows = documented()
  for (const [code, ctor] of Object.entries(errors)) t.equal(rows.get(code), ctor.meaning, code)
})

t.test('every code documented in docs/errors.md is in the catalog', async (t) => {
  const rows = documented()
  t.ok(rows.size > 0, 'the table parses')
  for (const code of rows.keys()) t.ok(code in errors, code)
})

t.test('no code outside the catalog is used anywhere in the source, and every catalog code is used', async (t) => {
  const files = ['src', 'sidecar', 'webhook', 'gateway', 'runtime-py'].flatMap((d) => sourceFiles(join(root, d))).filter((f) => !f.endsWith('src/errors.ts'))
  const used = new Set<string>()
  // A trailing `_` is a prefix in prose (`ASYA_ERR_RUNTIME_*`), not a code.
  for (const f of files) for (const m of readFileSync(f, 'utf8').matchAll(/ASYA_ERR_[A-Z0-9_]+/g)) if (!m[0].endsWith('_')) used.add(m[0])
  for (const code of used) t.ok(code in errors, `${code} is in the catalog`)
  for (const code of Object.keys(errors)) t.ok(used.has(code), `${code} is raised or logged somewhere`)
})

t.test('errors are built by the catalog only', async (t) => {
  const files = ['src', 'sidecar', 'webhook', 'gateway'].flatMap((d) => sourceFiles(join(root, d)))
  for (const f of files) t.notMatch(readFileSync(f, 'utf8'), /new AsyaError\(/, f)
})

t.test('a catalog constructor fills its template and carries code, details and cause', async (t) => {
  const cause = new Error('root')
  const err = new errors.ASYA_ERR_TLS('no cert', { cause, details: { path: '/x' } })
  t.ok(err instanceof AsyaError)
  t.ok(isAsyaError(err))
  t.ok(isAsyaError(err, 'ASYA_ERR_TLS'))
  t.notOk(isAsyaError(err, 'ASYA_ERR_K8S_API'))
  t.notOk(isAsyaError(new Error('x')))
  t.equal(err.cause, cause)
  t.same(err.toJSON(), { code: 'ASYA_ERR_TLS', message: 'no cert', details: { path: '/x' } })
  const two = new errors.ASYA_ERR_RUNTIME_UNREACHABLE('/var/run/asya/asya-runtime.sock', 'ENOENT')
  t.equal(two.message, 'cannot dial the runtime at /var/run/asya/asya-runtime.sock: ENOENT')
  t.same(two.details, {})
  t.equal(errors.ASYA_ERR_TLS.code, 'ASYA_ERR_TLS')
  t.equal(errorMessage('s'), 's')
  t.equal(errorMessage({ a: 1 }), '{"a":1}')
  t.equal(errorMessage(err), 'no cert')
})

t.test('each constructor takes exactly one argument per %s', async (t) => {
  for (const [code, ctor] of Object.entries(errors)) {
    const n = ctor.template.split('%s').length - 1
    const args = Array.from({ length: n }, (_, i) => `a${i}`)
    const Ctor = ctor as unknown as new (...a: unknown[]) => AsyaError
    const err = new Ctor(...args, { details: { k: 1 } })
    t.equal(err.code, code as AsyaErrorCode)
    t.notMatch(err.message, /%s/, code)
    t.same(err.details, { k: 1 }, code)
  }
})
