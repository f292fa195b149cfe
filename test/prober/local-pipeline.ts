/**
 * Runs a pipeline of real actors on this machine, the way Kubernetes would run them: per actor one
 * real `asya_runtime.py` process (supervised by RuntimeProcess, which plays the kubelet: restart on
 * exit or when the ready file disappears) and one real sidecar child process (`sidecar/main.ts`)
 * configured only through the SPEC §5 environment. Faults are injected with real signals.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { RuntimeProcess } from '../../src/runtime/runtime-process.js'
import { freePort } from '../support/free-port.js'
import { tuneActor, type ActorTuning } from './tuning.js'
export { freePort }

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

export interface ActorSpec {
  name: string
  /** `module.function` from test/prober/handlers (or a dir in `pythonPath`). */
  handler: string
  mode?: 'payload' | 'envelope'
  /** Extra sidecar env (ASYA_MAX_RETRIES, ASYA_RUNTIME_TIMEOUT, ...). */
  env?: Record<string, string>
  /** Extra runtime env. */
  runtimeEnv?: Record<string, string>
  /** false: an end actor without a runtime (ASYA_RUNTIME_ENABLED=false), as deploy/ ships them. @default true */
  runtime?: boolean
}

export interface LocalPipelineOptions {
  actors: ActorSpec[]
  /** Transport env shared by every sidecar (ASYA_TRANSPORT, ASYA_RABBITMQ_URL, ASYA_RABBITMQ_EXCHANGE, ...). */
  transportEnv: Record<string, string>
  pythonPath?: string[]
  /** Collect sidecar stdout/stderr lines here (for debugging failed runs). */
  onLog?: (actor: string, line: string) => void
  /** Every actor with a runtime at this concurrency / batch size (tuning.ts). @default the defaults */
  tuning?: ActorTuning
}

/** What an actor's handler calls reported (handlers/prober_handlers.py), maxima over runtime restarts. */
export interface HandlerStats {
  /** Most calls of the handler running at once in one runtime process. */
  peakInFlight: number
  /** Largest list a batch handler was called with (0: never called as a batch handler). */
  maxBatch: number
}

const STATS_MARK = 'asya-prober-stats '

interface RunningActor {
  spec: ActorSpec
  stats: HandlerStats
  socketDir: string
  runtime?: RuntimeProcess
  sidecar?: ChildProcess
  sidecarExit?: Promise<number | null>
  metricsPort: number
}


/** Children left behind by a test process that is killed (tap timeout) would keep consuming. */
const liveChildren = new Set<ChildProcess>()
process.once('exit', () => {
  for (const c of liveChildren) c.kill('SIGKILL')
})

export class LocalPipeline {
  private readonly running = new Map<string, RunningActor>()
  readonly sidecarExits: Array<{ actor: string; code: number | null; signal: string | null }> = []

  constructor(private readonly options: LocalPipelineOptions) {}

  async start(): Promise<void> {
    for (const spec of this.options.actors.map((a) => tuneActor(a, this.options.tuning))) {
      const socketDir = mkdtempSync(join(tmpdir(), `asya-${spec.name}-`))
      const runtime =
        spec.runtime === false
          ? undefined
          : new RuntimeProcess({
              handler: spec.handler,
              mode: spec.mode ?? 'payload',
              socketDir,
              pythonPath: this.options.pythonPath ?? [join(root, 'test', 'prober', 'handlers')],
              env: spec.runtimeEnv ?? {},
            })
      const stats: HandlerStats = { peakInFlight: 0, maxBatch: 0 }
      runtime?.on('line', (line: string) => {
        if (!line.startsWith(STATS_MARK)) return
        const r = JSON.parse(line.slice(STATS_MARK.length)) as { peak_in_flight?: number; max_batch?: number }
        stats.peakInFlight = Math.max(stats.peakInFlight, r.peak_in_flight ?? 0)
        stats.maxBatch = Math.max(stats.maxBatch, r.max_batch ?? 0)
      })
      await runtime?.start()
      const actor: RunningActor = { spec, stats, socketDir, ...(runtime ? { runtime } : {}), metricsPort: await freePort() }
      this.running.set(spec.name, actor)
      this.spawnSidecar(actor)
    }
    await Promise.all(this.options.actors.map((a) => this.waitReady(a.name)))
  }

  private spawnSidecar(actor: RunningActor): void {
    const env: Record<string, string> = {
      PATH: process.env['PATH'] ?? '',
      HOME: process.env['HOME'] ?? '/tmp',
      ...this.options.transportEnv,
      ASYA_ACTOR_NAME: actor.spec.name,
      ASYA_SOCKET_DIR: actor.socketDir,
      ASYA_METRICS_ADDR: `127.0.0.1:${actor.metricsPort}`,
      ASYA_LOG_LEVEL: process.env['ASYA_PROBER_SIDECAR_LOG_LEVEL'] ?? 'warn',
      ...(actor.spec.runtime === false ? { ASYA_IS_END_ACTOR: 'true', ASYA_RUNTIME_ENABLED: 'false' } : {}),
      ...(actor.spec.env ?? {}),
    }
    const child = spawn(process.execPath, ['--import', join(root, 'scripts', 'register-ts.mjs'), join(root, 'sidecar', 'main.ts')], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const onLog = this.options.onLog
    for (const stream of [child.stdout, child.stderr]) {
      let buf = ''
      stream?.on('data', (d: Buffer) => {
        buf += d.toString('utf8')
        let nl: number
        while ((nl = buf.indexOf('\n')) >= 0) {
          onLog?.(actor.spec.name, buf.slice(0, nl))
          buf = buf.slice(nl + 1)
        }
      })
    }
    actor.sidecar = child
    liveChildren.add(child)
    child.once('exit', () => liveChildren.delete(child))
    actor.sidecarExit = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.sidecarExits.push({ actor: actor.spec.name, code, signal })
        resolve(code)
      })
    })
  }

  /** Waits until the sidecar of `actor` answers /readyz with 200. */
  async waitReady(name: string, timeoutMs = 120_000): Promise<void> {
    const actor = this.must(name)
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      try {
        const res = await fetch(`http://127.0.0.1:${actor.metricsPort}/readyz`)
        if (res.status === 200) return
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error(`sidecar of ${name} not ready within ${timeoutMs} ms`)
  }

  /** Text of the sidecar's /metrics. */
  async metrics(name: string): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${this.must(name).metricsPort}/metrics`)
    return res.text()
  }

  /** Sends `signal` to the sidecar and waits for it to exit; returns its exit code. */
  async stopSidecar(name: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const actor = this.must(name)
    actor.sidecar?.kill(signal)
    return (await actor.sidecarExit) ?? null
  }

  /** Resolves with the exit code when the current sidecar process of `name` exits (by itself or not). */
  sidecarExited(name: string): Promise<number | null> {
    return this.must(name).sidecarExit ?? Promise.resolve(null)
  }

  /** Starts a fresh sidecar for `name` (after stopSidecar) and waits until it is ready. */
  async restartSidecar(name: string): Promise<void> {
    const actor = this.must(name)
    this.spawnSidecar(actor)
    await this.waitReady(name)
  }

  /** Sends a signal without waiting (SIGSTOP / SIGCONT to freeze and thaw a sidecar). */
  signalSidecar(name: string, signal: NodeJS.Signals): void {
    this.must(name).sidecar?.kill(signal)
  }

  /** SIGKILLs the runtime of `name`; RuntimeProcess brings it back like the kubelet would. */
  killRuntime(name: string): void {
    this.must(name).runtime?.kill('SIGKILL')
  }

  metricsPort(name: string): number {
    return this.must(name).metricsPort
  }

  /** What the handler of `name` reported so far (calls at once, largest batch). */
  handlerStats(name: string): HandlerStats {
    return { ...this.must(name).stats }
  }

  runtimeRestarts(name: string): number {
    return this.must(name).runtime?.restarts ?? 0
  }

  async stop(): Promise<void> {
    await Promise.all(
      [...this.running.values()].map(async (a) => {
        if (a.sidecar && a.sidecar.exitCode === null && a.sidecar.signalCode === null) {
          a.sidecar.kill('SIGTERM')
          const timer = setTimeout(() => a.sidecar?.kill('SIGKILL'), 15_000)
          await a.sidecarExit
          clearTimeout(timer)
        }
        await a.runtime?.stop().catch(() => undefined)
        rmSync(a.socketDir, { recursive: true, force: true })
      }),
    )
    this.running.clear()
  }

  private must(name: string): RunningActor {
    const a = this.running.get(name)
    if (!a) throw new Error(`no actor ${name}`)
    return a
  }
}
