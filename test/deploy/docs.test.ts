/**
 * The reference docs cannot drift from the code: every environment variable a component reads is
 * in docs/configuration.md, and every metric a component registers is in docs/metrics.md.
 */
import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

function tsFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = join(dir, e.name)
    if (e.isDirectory()) return tsFiles(rel)
    return e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [rel] : []
  })
}

const sources = [...tsFiles('src'), ...tsFiles('sidecar'), ...tsFiles('webhook'), ...tsFiles('gateway')].map((f) => ({ f, text: readFileSync(join(root, f), 'utf8') }))

t.test('every ASYA_* variable read by a component is in docs/configuration.md', async (t) => {
  const doc = readFileSync(join(root, 'docs/configuration.md'), 'utf8')
  const read = new Map<string, string>()
  for (const { f, text } of sources) {
    // EnvReader calls (r.string('X'), r.int('X', …), r.fail('X', …)) and direct env.X reads.
    for (const m of text.matchAll(/\br\.[a-zA-Z]+\('(ASYA_[A-Z0-9_]+)'/g)) read.set(m[1] as string, f)
    for (const m of text.matchAll(/\benv\.(ASYA_[A-Z0-9_]+)/g)) read.set(m[1] as string, f)
  }
  t.ok(read.size > 40, `${read.size} variables found in the code`)
  for (const [name, file] of [...read].sort()) t.ok(doc.includes(`\`${name}\``), `${name} (read in ${file}) is documented`)
})

t.test('every metric a component registers is in docs/metrics.md', async (t) => {
  const doc = readFileSync(join(root, 'docs/metrics.md'), 'utf8')
  const names = new Set<string>()
  for (const { text } of sources) {
    for (const m of text.matchAll(/name: n\('([a-z_]+)'\)/g)) names.add(`asya_actor_${m[1] as string}`)
    for (const m of text.matchAll(/name: '(asya_[a-z_]+)'/g)) names.add(m[1] as string)
    for (const m of text.matchAll(/const name = '(asya_[a-z_]+)'/g)) names.add(m[1] as string)
  }
  t.ok(names.size >= 20, `${names.size} metrics found in the code`)
  for (const name of [...names].sort()) t.ok(doc.includes(`\`${name}\``), `${name} is documented`)
})
