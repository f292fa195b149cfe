/**
 * Summarises V8 .cpuprofile files (node --cpu-prof) for docs/sidecar.md: self time by category
 * (our code by file, amqplib, pino, prom-client, JSON, Buffer/streams, net/libuv, GC, idle) and the
 * top self-time functions.
 *
 *   node --import ./scripts/register-ts.mjs bench/cpu-profile-summary.ts DIR_OR_FILES...
 */
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

interface Node {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
}
interface Profile {
  nodes: Node[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

function files(args: string[]): string[] {
  return args.flatMap((a) => (statSync(a).isDirectory() ? readdirSync(a).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(a, f)) : [a]))
}

function category(n: Node): string {
  const { functionName: fn, url } = n.callFrame
  if (fn === '(idle)') return 'idle'
  if (fn === '(garbage collector)') return 'GC'
  if (fn === '(program)') return 'V8/native (program)'
  if (url.includes('/node_modules/amqplib/')) return 'amqplib'
  if (url.includes('/node_modules/pino') || url.includes('/node_modules/sonic-boom') || url.includes('thread-stream')) return 'pino'
  if (url.includes('/node_modules/prom-client/')) return 'prom-client'
  if (url.includes('/node_modules/')) return 'other node_modules'
  const own = /\/(sidecar|src)\/(.+?)\.js$/.exec(url)
  if (own) return `${own[1]}/${own[2]}`
  if (fn === 'parse' || fn === 'stringify') return 'JSON'
  if (url.startsWith('node:') || url === '') {
    if (/net|stream|socket|tcp|pipe|writev|write|read/i.test(url + fn)) return 'node: net/streams'
    if (/buffer|Buffer|utf8|copy|concat|slice/i.test(url + fn)) return 'node: Buffer'
    if (/timers|setTimeout|setImmediate|nextTick|processTicksAndRejections|runMicrotasks/i.test(url + fn)) return 'node: timers/ticks'
    return url === '' ? `native: ${fn || '(anonymous)'}` : 'node: other'
  }
  return 'other'
}

const profiles = files(process.argv.slice(2)).map((f) => JSON.parse(readFileSync(f, 'utf8')) as Profile)
const byCat = new Map<string, number>()
const byFn = new Map<string, number>()
let totalUs = 0
let idleUs = 0
for (const p of profiles) {
  const nodes = new Map(p.nodes.map((n) => [n.id, n]))
  p.samples.forEach((id, i) => {
    const n = nodes.get(id) as Node
    const dt = p.timeDeltas[i] ?? 0
    const c = category(n)
    totalUs += dt
    if (c === 'idle') {
      idleUs += dt
      return
    }
    byCat.set(c, (byCat.get(c) ?? 0) + dt)
    const where = n.callFrame.url.replace(/^.*\/(node_modules\/[^/]+|sidecar|src)\//, '$1/')
    const key = `${n.callFrame.functionName || '(anonymous)'} ${where}:${n.callFrame.lineNumber + 1}`
    byFn.set(key, (byFn.get(key) ?? 0) + dt)
  })
}
const busy = totalUs - idleUs
const pct = (us: number): string => ((us / busy) * 100).toFixed(1)
console.log(`${profiles.length} profiles, ${(totalUs / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy (${((busy / totalUs) * 100).toFixed(0)} %)\n`)
console.log('| where | % of busy time |\n|---|---:|')
for (const [c, us] of [...byCat].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`| ${c} | ${pct(us)} |`)
console.log('\n| top self-time functions | % |\n|---|---:|')
for (const [f, us] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`| \`${f}\` | ${pct(us)} |`)
