/**
 * `npm run bench`: runs every bench/*.bench.ts in its own process, one after another (they must
 * not compete for the 2 cores), and writes docs/benchmarks.md from the markdown each one prints.
 *
 * Convention: a bench prints progress on stderr and, on stdout, one markdown section that starts
 * with `## <title>` and states its method, N, payload size and its in-run baseline.
 * `npm run bench -- runtime` runs only the benches whose file name contains `runtime`.
 */
import { spawnSync } from 'node:child_process'
import { readdirSync, writeFileSync, readFileSync, existsSync } from 'node:fs'
import { cpus, totalmem, release } from 'node:os'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const filter = process.argv[2]
const benches = readdirSync(join(root, 'bench'))
  .filter((f) => f.endsWith('.bench.ts') && (filter === undefined || f.includes(filter)))
  .sort()

const docPath = join(root, 'docs', 'benchmarks.md')
const previous = existsSync(docPath) ? readFileSync(docPath, 'utf8') : ''
const sections = new Map<string, string>()
// Keep sections of benches that were not re-run (filtered runs update only their own section).
for (const block of previous.split(/^<!-- bench:/m).slice(1)) {
  const name = block.slice(0, block.indexOf(' -->'))
  sections.set(name, block.slice(block.indexOf('-->') + 3).replace(/<!-- end -->[\s\S]*$/, '').trim())
}

for (const file of benches) {
  const name = file.replace(/\.bench\.ts$/, '')
  process.stderr.write(`\n== bench ${name} ==\n`)
  const r = spawnSync(process.execPath, ['--expose-gc', '--import', './scripts/register-ts.mjs', join('bench', file)], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    timeout: 20 * 60 * 1000,
  })
  const out = (r.stdout ?? '').trim()
  const md = out.slice(Math.max(0, out.indexOf('## ')))
  if (r.status !== 0 || md === '') {
    process.stderr.write(`bench ${name} failed (exit ${r.status})\n`)
    process.exitCode = 1
    continue
  }
  sections.set(name, md)
  process.stdout.write(md + '\n\n')
}

const cpu = cpus()[0]?.model ?? 'unknown'
const header = `# Benchmarks

Produced by \`npm run bench\` (bench/run-all.ts). Each section states its method and sits beside a
baseline **measured in the same run on the same machine** (SPEC §12), because absolute numbers drift
from run to run. Sections are rewritten each time their bench runs; the machine line below is the
machine of the latest run.

Machine of the latest run: ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()},
Node ${process.version}, ${new Date().toISOString().slice(0, 10)}.
`
let doc = header
for (const [name, md] of [...sections.entries()].sort()) doc += `\n<!-- bench:${name} -->\n${md}\n<!-- end -->\n`
writeFileSync(docPath, doc)
process.stderr.write(`wrote ${docPath}\n`)
