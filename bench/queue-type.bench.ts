/**
 * Quorum vs classic queues (issue 17, SPEC §3): what the crash-loop protection and at-least-once
 * dead-lettering of quorum queues cost. In one run, alternating the order each round so drift
 * falls on both: the 3-echo-actor pipeline of pipeline.bench.ts with every queue quorum
 * (the default) and with every queue classic (ASYA_RABBITMQ_QUEUE_TYPE=classic), and beside them
 * the raw amqplib relay (3 hops, prefetch 32, persistent + confirms) on each queue type: the
 * broker's own ceiling for that type.
 *
 *   npm run bench -- queue-type        (BENCH_N=10000, BENCH_ROUNDS=2)
 */
import { cpus, loadavg } from 'node:os'
import { brokerPid, buildDist, pipeline, rawRelay, type CpuPerEnvelope, type PipelineResult } from './pipeline.bench.js'

const N = Number(process.env.BENCH_N ?? 10_000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
const LATENCY_N = Number(process.env.BENCH_LATENCY_N ?? 500)
const TYPES = ['quorum', 'classic'] as const
type QueueType = (typeof TYPES)[number]
const QUEUE_ARGS: Record<QueueType, Record<string, unknown>> = { quorum: { 'x-queue-type': 'quorum' }, classic: {} }
const log = (s: string): void => void process.stderr.write(`${s}\n`)
const ms = (x: number): string => x.toFixed(3)

async function main(): Promise<void> {
  buildDist()
  const load0 = loadavg()
  const brokerMeasured = brokerPid() !== undefined
  if (!brokerMeasured) log('more than one (or no) beam.smp on this machine: broker CPU is not attributed')
  const raw: Partial<Record<QueueType, { rate: number; cpu: CpuPerEnvelope }>> = {}
  for (const type of TYPES) {
    const r = await rawRelay(32, N, QUEUE_ARGS[type])
    raw[type] = r
    log(`raw relay ${type} (prefetch 32): ${r.rate.toFixed(0)}/s, broker ${ms(r.cpu.broker)} ms/envelope`)
  }
  const runs: Record<QueueType, PipelineResult[]> = { quorum: [], classic: [] }
  for (let round = 0; round < ROUNDS; round++) {
    for (const type of round % 2 === 0 ? TYPES : [...TYPES].reverse()) {
      const r = await pipeline(N, { queueType: type, latencyN: LATENCY_N })
      runs[type].push(r)
      log(`round ${round + 1} ${type}: ${r.rate.toFixed(0)}/s; p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} ms one at a time; broker ${ms(r.cpu.broker)} ms/envelope`)
    }
  }
  const load1 = loadavg()
  const best = (type: QueueType): PipelineResult => [...runs[type]].sort((a, b) => b.rate - a.rate)[0] as PipelineResult
  const q = best('quorum')
  const c = best('classic')
  const rq = raw.quorum as { rate: number; cpu: CpuPerEnvelope }
  const rc = raw.classic as { rate: number; cpu: CpuPerEnvelope }
  const pctOf = (a: number, b: number): string => `${((a / b) * 100).toFixed(0)} %`
  // 0 means no single beam.smp when that measurement started (another node, e.g. a test's private
  // one, was up): not attributable, not free.
  const broker = (x: number): string => (brokerMeasured && x > 0 ? `${ms(x)} ms` : 'n/a')
  const brokerRatio = (a: number, b: number): string => (brokerMeasured && a > 0 && b > 0 ? pctOf(a, b) : 'n/a')
  const rates = (type: QueueType): string => runs[type].map((r) => r.rate.toFixed(0)).join(', ')
  console.log(`## Quorum vs classic queues

What quorum queues (the default, SPEC §3: crash-loop detection through \`x-delivery-count\`,
at-least-once dead-lettering from retry tiers) cost against upstream's classic queues
(\`ASYA_RABBITMQ_QUEUE_TYPE=classic\`), in one run: the 3-echo-actor pipeline of
[the pipeline bench](#pipeline-3-echo-actors-on-rabbitmq) (real sidecar processes, one runtime per
actor, closed loop of 256 in flight, ${N} × 1 KB envelopes, ${ROUNDS} rounds alternating which type
goes first, best round shown) with every queue of the run of one type, and the raw amqplib relay
(3 hops, prefetch 32, persistent + publisher confirms) on each type as the broker's own ceiling.
Latency is one envelope at a time (${LATENCY_N}), through all 3 hops. Broker CPU is the beam.smp
process's user + system time over the measured window, per envelope (n/a when another RabbitMQ
node ran on the machine at that moment). A loaded machine moves these figures by tens of percent
between rounds: compare the two columns of one run, not runs.

Reproduce: \`npm run bench -- queue-type\` (BENCH_N, BENCH_ROUNDS, BENCH_LATENCY_N).
Machine load (1 / 5-minute load average, ${cpus().length} cores): ${load0[0]?.toFixed(1)} / ${load0[1]?.toFixed(1)} at the start,
${load1[0]?.toFixed(1)} / ${load1[1]?.toFixed(1)} at the end.

| | quorum | classic | quorum / classic |
|---|---|---|---|
| raw relay, 3 hops, prefetch 32 | ${rq.rate.toFixed(0)} /s | ${rc.rate.toFixed(0)} /s | ${pctOf(rq.rate, rc.rate)} |
| raw relay: broker CPU per envelope | ${broker(rq.cpu.broker)} | ${broker(rc.cpu.broker)} | ${brokerRatio(rq.cpu.broker, rc.cpu.broker)} |
| **pipeline throughput** (rounds: ${rates('quorum')} / ${rates('classic')}) | **${q.rate.toFixed(0)} /s** | **${c.rate.toFixed(0)} /s** | **${pctOf(q.rate, c.rate)}** |
| pipeline: broker CPU per envelope (3 hops) | ${broker(q.cpu.broker)} | ${broker(c.cpu.broker)} | ${brokerRatio(q.cpu.broker, c.cpu.broker)} |
| pipeline: sidecars' CPU per envelope (3 hops) | ${ms(q.cpu.sidecars)} ms | ${ms(c.cpu.sidecars)} ms | ${pctOf(q.cpu.sidecars, c.cpu.sidecars)} |
| latency, one at a time, p50 / p99 | ${q.p50.toFixed(2)} / ${q.p99.toFixed(2)} ms | ${c.p50.toFixed(2)} / ${c.p99.toFixed(2)} ms | |
| latency under load (256 in flight), p50 / p99 | ${q.loadedP50.toFixed(0)} / ${q.loadedP99.toFixed(0)} ms | ${c.loadedP50.toFixed(0)} / ${c.loadedP99.toFixed(0)} ms | |

Retry tiers are not on this path (echo handlers never fail); a retried envelope adds one publish
into a tier and one broker-side dead-letter hop, at-least-once (confirmed) on quorum.`)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
