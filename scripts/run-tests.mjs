#!/usr/bin/env node
// Runs every TypeScript test (tap) and every Python test (unittest), then prints one closing line
// `N passed, N failed, N skipped` counting tests (tap subtests and unittest cases), not assertions.
// Extra arguments are passed to tap (e.g. a single test file).
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { ensureBroker, sweepTestQueues } from './ensure-broker.mjs'
import { ensurePostgres } from './ensure-postgres.mjs'

function run(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
    let out = ''
    child.stdout.on('data', (d) => { out += d; process.stdout.write(d) })
    child.stderr.on('data', (d) => { out += d; process.stderr.write(d) })
    child.on('close', (code) => resolve({ code: code ?? 1, out }))
  })
}

const args = process.argv.slice(2)
const onlyPython = args.includes('--python-only')
const onlyTs = args.includes('--ts-only')
const tapArgs = args.filter((a) => !a.startsWith('--python-only') && !a.startsWith('--ts-only'))
let passed = 0, failed = 0, skipped = 0, exit = 0

if (!onlyPython) {
  await ensureBroker()
  await ensurePostgres()
  // A whole-suite run (no file named) starts and ends on a broker without earlier runs' queues.
  const wholeSuite = tapArgs.every((a) => a.startsWith('-'))
  if (wholeSuite) await sweepTestQueues()
  const tap = await run('npx', ['tap', '--reporter=tap', ...tapArgs])
  if (wholeSuite) await sweepTestQueues()
  // A subtest's result line carries `# time=` (or a SKIP/TODO directive); assertions do not.
  // Depth-1 subtests (4 spaces) are the tests of a file; files themselves are depth 0.
  let fileFailures = 0
  let subFailuresInFile = 0
  for (const line of tap.out.split('\n')) {
    const sub = /^    (not ok|ok) \d+ - .*# (time=|SKIP|TODO)/.exec(line)
    if (sub) {
      if (/# (SKIP|TODO)/.test(line)) skipped++
      else if (sub[1] === 'ok') passed++
      else { failed++; subFailuresInFile++ }
      continue
    }
    const file = /^(not ok|ok) \d+ - /.exec(line)
    if (file) {
      // A file that failed without a failing subtest (crash, timeout, top-level assertion) counts once.
      if (file[1] === 'not ok' && subFailuresInFile === 0) fileFailures++
      subFailuresInFile = 0
    }
  }
  failed += fileFailures
  if (tap.code !== 0) exit = 1
}

if (!onlyTs && !existsSync('runtime-py')) {
  console.log('# runtime-py/ not present: no Python tests to run')
} else if (!onlyTs) {
  const py = await run('python3', ['-m', 'unittest', 'discover', '-s', 'runtime-py', '-t', 'runtime-py', '-p', 'test_*.py', '-v'])
  const ran = /Ran (\d+) tests?/.exec(py.out)
  const total = ran ? Number(ran[1]) : 0
  const f = /FAILED \(([^)]*)\)/.exec(py.out)
  let pyFailed = 0, pySkipped = 0
  const sk = /skipped=(\d+)/.exec(py.out)
  if (sk) pySkipped = Number(sk[1])
  if (f) {
    for (const m of f[1].matchAll(/(failures|errors|unexpected successes)=(\d+)/g)) pyFailed += Number(m[2])
  }
  if (!ran && py.code !== 0) pyFailed = 1
  passed += total - pyFailed - pySkipped
  failed += pyFailed
  skipped += pySkipped
  if (py.code !== 0) exit = 1
}

console.log(`\n${passed} passed, ${failed} failed, ${skipped} skipped`)
process.exit(exit || (failed > 0 ? 1 : 0))
