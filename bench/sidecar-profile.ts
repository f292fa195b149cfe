/**
 * Profiles the sidecar against the minimal hop (docs/sidecar.md "Where a hop's CPU goes"): runs the
 * 3-actor echo pipeline of bench/pipeline.bench.ts once with the minimal hop and once with the
 * sidecar started under `--cpu-prof`, then prints the per-hop CPU of both and a summary of the
 * sidecar profiles (bench/cpu-profile-summary.ts).
 *
 *   PROF_N=3000 PROF_DIR=/tmp/asya-prof node --import ./scripts/register-ts.mjs bench/sidecar-profile.ts
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, rmSync } from 'node:fs'
const dir = process.env.PROF_DIR ?? '/tmp/asya-prof'
if (!process.env.BENCH_SIDECAR_ARGS) {
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  // pipeline.bench.ts reads the sidecar's flags at import: re-run this file with them set
  // (NODE_OPTIONS refuses --cpu-prof, so they go on the command line).
  const r = spawnSync(process.execPath, process.execArgv.concat(process.argv.slice(1)), {
    stdio: 'inherit',
    env: { ...process.env, BENCH_SIDECAR_ARGS: `--cpu-prof --cpu-prof-dir=${dir}` },
  })
  if (r.status !== 0) process.exit(r.status ?? 1)
  spawnSync(process.execPath, ['--import', './scripts/register-ts.mjs', 'bench/cpu-profile-summary.ts', dir], { stdio: 'inherit' })
} else {
  const { buildDist, pipeline } = await import('./pipeline.bench.js')
  buildDist()
  const n = Number(process.env.PROF_N ?? 3000)
  const floor = await pipeline(n, { hop: 'minimal', latencyN: 0, warmup: 300 })
  const side = await pipeline(n, { latencyN: 0, warmup: 300 })
  console.log(`minimal hop ${floor.rate.toFixed(0)}/s, ${(floor.cpu.sidecars / 3).toFixed(3)} ms CPU per envelope per hop`)
  console.log(`sidecar     ${side.rate.toFixed(0)}/s, ${(side.cpu.sidecars / 3).toFixed(3)} ms CPU per envelope per hop (profiled: --cpu-prof adds its own cost)`)
}
