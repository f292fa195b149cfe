/**
 * Every prober scenario runs in CI. Checked against what the test files actually call — the
 * `scenarioTests([...], transport)` lines tap runs — not against a second hand-kept list, so a
 * scenario added without a test, dropped from a test file, or misspelled there fails here.
 */
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { SCENARIOS } from './scenarios.js'

const dir = import.meta.dirname

function scheduled(): Array<{ file: string; name: string; transport: string; variant: string }> {
  const out: Array<{ file: string; name: string; transport: string; variant: string }> = []
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.test.ts'))) {
    const text = readFileSync(join(dir, file), 'utf8')
    // scenarioTests([names], transport?, queueType?, options?): one scenario may run once per
    // variant (queue type, tuning), so a run is the scenario plus the rest of the call's arguments.
    for (const m of text.matchAll(/^scenarioTests\(\[([^\]]*)\](.*)$/gm)) {
      const rest = (m[2] ?? '').replace(/\)\s*$/, '')
      const transport = /^\s*,\s*'([a-z]+)'/.exec(rest)?.[1] ?? 'rabbitmq'
      const variant = rest.replace(/\s+/g, '')
      for (const n of (m[1] ?? '').matchAll(/'([a-z0-9-]+)'/g)) out.push({ file, name: n[1] as string, transport, variant })
    }
  }
  return out
}

t.test('every prober scenario is scheduled on RabbitMQ by a test file, and every scheduled name exists', async (t) => {
  const runs = scheduled()
  t.ok(runs.length >= Object.keys(SCENARIOS).length, `${runs.length} scheduled runs found`)
  for (const r of runs) t.ok(r.name in SCENARIOS, `${r.file}: ${r.name} is a scenario`)
  for (const name of Object.keys(SCENARIOS)) t.ok(runs.some((r) => r.name === name && r.transport === 'rabbitmq'), `${name} runs on rabbitmq in CI`)
  const seen = new Set<string>()
  for (const r of runs) {
    const key = `${r.name}(${r.variant.replace(/^,/, '')})`
    t.notOk(seen.has(key), `${key} scheduled once`)
    seen.add(key)
  }
})
