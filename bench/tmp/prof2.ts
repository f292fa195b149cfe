import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
const dir = process.argv[2] as string
const byFn = new Map<string, number>()
const incl = new Map<string, number>()
let busy = 0
for (const f of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))) {
  const p = JSON.parse(readFileSync(join(dir, f), 'utf8'))
  const nodes = new Map<number, any>(p.nodes.map((n: any) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  p.samples.forEach((id: number, i: number) => {
    const n = nodes.get(id)
    const dt = p.timeDeltas[i] ?? 0
    if (n.callFrame.functionName === '(idle)') return
    busy += dt
    const key = (x: any) => `${x.callFrame.functionName || '(anon)'} ${x.callFrame.url.replace(/^.*\/(node_modules\/[^/]+|sidecar|src)\//, '$1/')}:${x.callFrame.lineNumber + 1}`
    byFn.set(key(n), (byFn.get(key(n)) ?? 0) + dt)
    const seen = new Set<string>()
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = key(nodes.get(cur))
      if (seen.has(k)) continue
      seen.add(k)
      incl.set(k, (incl.get(k) ?? 0) + dt)
    }
  })
}
const show = (m: Map<string, number>, filt: (k: string) => boolean, n: number) => [...m].filter(([k]) => filt(k)).sort((a, b) => b[1] - a[1]).slice(0, n).forEach(([k, v]) => console.log(((v / busy) * 100).toFixed(1).padStart(6), k))
console.log('--- self, node:')
show(byFn, (k) => k.includes('node:'), 25)
console.log('--- inclusive, own code')
show(incl, (k) => /^\S+ (sidecar|src)\//.test(k), 45)
