/**
 * Runtime round-trip (issue 2, SPEC §12 "runtime limit"): round-trips/s and latency of
 * RuntimeClient against one asya_runtime.py echo process, beside a raw node:net client doing the
 * same framing (baseline, same run, same runtime process), for 1 KB and 1 MB envelopes.
 *
 *   npm run bench -- runtime
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { RuntimeClient } from '../src/runtime/runtime-client.js'
import { RuntimeProcess } from '../src/runtime/runtime-process.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const log = (s: string): void => void process.stderr.write(`${s}\n`)

/** The baseline: the least a client can do: dial, write the frame, read the frame, close. */
function rawCall(socketPath: string, body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath)
    const chunks: Buffer[] = []
    let got = 0
    let want = -1
    sock.on('connect', () => {
      const h = Buffer.allocUnsafe(4)
      h.writeUInt32BE(body.length, 0)
      sock.write(h)
      sock.write(body)
    })
    sock.on('data', (c: Buffer) => {
      chunks.push(c)
      got += c.length
      if (want < 0 && got >= 4) want = Buffer.concat(chunks).readUInt32BE(0)
      if (want >= 0 && got >= want + 4) {
        sock.destroy()
        resolve(Buffer.concat(chunks).subarray(4, 4 + want))
      }
    })
    sock.on('error', reject)
  })
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}

async function measure(n: number, call: () => Promise<unknown>): Promise<{ rate: number; p50: number; p99: number }> {
  for (let i = 0; i < Math.min(200, n); i++) await call()
  const lat: number[] = []
  const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    const s = performance.now()
    await call()
    lat.push(performance.now() - s)
  }
  const secs = (performance.now() - t0) / 1000
  lat.sort((a, b) => a - b)
  return { rate: n / secs, p50: pct(lat, 50), p99: pct(lat, 99) }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'asya-bench-rt-'))
  const rp = new RuntimeProcess({ handler: 'sidecar_handlers.echo', socketDir: dir, pythonPath: [join(root, 'test', 'sidecar', 'handlers')], env: { ASYA_LOG_LEVEL: 'WARNING' } })
  await rp.start()
  const client = new RuntimeClient({ socketDir: dir })
  const rows: string[] = []
  for (const [label, size, n] of [
    ['1 KB', 1024, Number(process.env.BENCH_N ?? 5000)],
    ['1 MB', 1024 * 1024, 300],
  ] as const) {
    const body = Buffer.from(JSON.stringify({ id: 'b', route: { actors: ['a'], current: 0 }, payload: { blob: 'x'.repeat(size - 60) } }))
    // Interleave baseline and client runs twice so drift hits both alike.
    const raw1 = await measure(n, () => rawCall(client.socketPath, body))
    const cli1 = await measure(n, () => client.call(body))
    const raw2 = await measure(n, () => rawCall(client.socketPath, body))
    const cli2 = await measure(n, () => client.call(body))
    const raw = raw1.p50 <= raw2.p50 ? raw1 : raw2
    const cli = cli1.p50 <= cli2.p50 ? cli1 : cli2
    // Second baseline: the same raw socket plus the JSON.parse any client that validates the
    // response shape must do (the issue asks the client to validate it).
    const parsed = await measure(n, async () => JSON.parse((await rawCall(client.socketPath, body)).toString('utf8')) as unknown)
    log(`${label}: raw ${raw.rate.toFixed(0)}/s p50 ${raw.p50.toFixed(3)} | client ${cli.rate.toFixed(0)}/s p50 ${cli.p50.toFixed(3)}`)
    rows.push(
      `| ${label} (${body.length} B), ${n} sequential | ${raw.rate.toFixed(0)} /s, p50 ${raw.p50.toFixed(3)} ms, p99 ${raw.p99.toFixed(3)} ms | ${parsed.rate.toFixed(0)} /s, p50 ${parsed.p50.toFixed(3)} ms | ${cli.rate.toFixed(0)} /s, p50 ${cli.p50.toFixed(3)} ms, p99 ${cli.p99.toFixed(3)} ms | ${(cli.p50 - raw.p50).toFixed(3)} ms | ${(cli.p50 - parsed.p50).toFixed(3)} ms |`,
    )
  }
  await rp.stop()
  rmSync(dir, { recursive: true, force: true })
  console.log(`## Runtime round-trip: RuntimeClient vs a raw socket

Method: one \`asya_runtime.py\` process with an echo handler (payload mode); sequential requests,
one connection per request (the protocol); 200 warm-up calls; each side measured twice,
interleaved, best p50 kept. Baseline in the same run against the same process: a bare
\`node:net\` client doing the same framing with no validation, deadline or error mapping.
Target (issue 2): the client adds ≤ 0.1 ms p50 over the baseline. Reproduce: \`npm run bench -- runtime\`.

| envelope | raw socket (baseline) | raw socket + JSON.parse (baseline 2) | RuntimeClient | added p50 vs raw | added p50 vs raw + parse |
|---|---|---|---|---|---|
${rows.join('\n')}
`)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
