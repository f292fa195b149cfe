/**
 * Runs `asya_runtime.py` as a child process and plays the kubelet's part where no kubelet watches
 * (the local demo, tests, the prober): restart the runtime when it exits unexpectedly, and when its
 * ready file disappears after it had been ready (the sidecar removes it after a handler timeout,
 * exactly what the injected liveness probe checks in a pod).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { existsSync, mkdirSync, rmSync } from 'node:fs'
import { delimiter, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Logger } from '../logger.js'
import { RUNTIME_SCRIPT_KEY } from '../names.js'
import { RuntimeClient } from './runtime-client.js'

/** Where runtime-py/asya_runtime.py may be: this checkout (src/ or dist/src/), then the working directory. */
export function runtimeScriptCandidates(): string[] {
  const here = dirname(fileURLToPath(import.meta.url))
  return [join(here, '..', '..', 'runtime-py', RUNTIME_SCRIPT_KEY), join(here, '..', '..', '..', 'runtime-py', RUNTIME_SCRIPT_KEY), join(process.cwd(), 'runtime-py', RUNTIME_SCRIPT_KEY)]
}

/** Absolute path of runtime-py/asya_runtime.py in this checkout (or next to dist/). */
export function runtimeScriptPath(): string {
  const candidates = runtimeScriptCandidates()
  return candidates.find((p) => existsSync(p)) ?? (candidates[0] as string)
}

/** Runtimes must not outlive the process that supervises them (a killed test or demo). */
const liveChildren = new Set<ChildProcess>()
process.once('exit', () => {
  for (const c of liveChildren) c.kill('SIGKILL')
})

export interface RuntimeProcessOptions {
  /** ASYA_HANDLER: module.function or module.Class.method. */
  handler: string
  /** ASYA_HANDLER_MODE. @default 'payload' */
  mode?: 'payload' | 'envelope'
  socketDir: string
  /** Working directory of the runtime. @default process.cwd() */
  cwd?: string
  /** Prepended to PYTHONPATH (where the handler module lives). */
  pythonPath?: string[]
  /** Extra environment for the runtime. */
  env?: NodeJS.ProcessEnv
  /** How often the ready file is checked once the runtime was ready. @default 250 */
  livenessIntervalMs?: number
  /** Restart on unexpected exit or lost ready file. @default true */
  restart?: boolean
  /** How long start() waits for the ready file. @default 30000 */
  readyTimeoutMs?: number
  logger?: Logger
  /** @default 'python3' */
  python?: string
}

export class RuntimeProcess extends EventEmitter {
  private child: ChildProcess | undefined
  private stopped = false
  private restartCount = 0
  private liveness: NodeJS.Timeout | undefined
  private wasReady = false
  /** The current child has written its ready file at least once. */
  private childReady = false
  /** Consecutive children that died before becoming ready (restart backoff). */
  private earlyDeaths = 0
  private readonly client: RuntimeClient

  constructor(private readonly o: RuntimeProcessOptions) {
    super()
    this.client = new RuntimeClient({ socketDir: o.socketDir })
  }

  get pid(): number | undefined {
    return this.child?.pid
  }

  get restarts(): number {
    return this.restartCount
  }

  async start(): Promise<void> {
    this.stopped = false
    mkdirSync(this.o.socketDir, { recursive: true })
    this.spawnChild()
    await this.client.waitReady(this.o.readyTimeoutMs ?? 30_000)
    this.wasReady = true
    this.childReady = true
    this.watch()
  }

  private spawnChild(): void {
    // A ready file left by the previous child must not be mistaken for the new one's.
    rmSync(this.client.readyFile, { force: true })
    this.childReady = false
    const pythonPath = [...(this.o.pythonPath ?? []).map((p) => resolve(p)), ...(process.env.PYTHONPATH ? [process.env.PYTHONPATH] : [])].join(delimiter)
    const child = spawn(this.o.python ?? 'python3', [runtimeScriptPath()], {
      cwd: this.o.cwd ?? process.cwd(),
      env: {
        ...process.env,
        PYTHONUNBUFFERED: '1',
        ...(pythonPath ? { PYTHONPATH: pythonPath } : {}),
        ...(this.o.env ?? {}),
        ASYA_HANDLER: this.o.handler,
        ASYA_HANDLER_MODE: this.o.mode ?? 'payload',
        ASYA_SOCKET_DIR: this.o.socketDir,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.child = child
    liveChildren.add(child)
    child.once('exit', () => liveChildren.delete(child))
    const forward = (stream: NodeJS.ReadableStream | null): void => {
      let buf = ''
      stream?.on('data', (d: Buffer) => {
        buf += d.toString('utf8')
        let nl: number
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl)
          buf = buf.slice(nl + 1)
          if (this.o.logger) this.o.logger.info({ runtime: line }, 'runtime output')
          else if (process.env.ASYA_RUNTIME_STDERR === '1') process.stderr.write(line + '\n')
          this.emit('line', line)
        }
      })
    }
    forward(child.stdout)
    forward(child.stderr)
    child.once('exit', (code, signal) => {
      if (this.child !== child) return
      this.child = undefined
      this.emit('exit', { code, signal })
      if (!this.childReady) this.earlyDeaths++
      if (!this.stopped && (this.o.restart ?? true) && this.wasReady) {
        // Like the kubelet's CrashLoopBackOff: a runtime that dies at start is not restarted hot.
        const delay = this.earlyDeaths === 0 ? 0 : Math.min(10_000, 200 * 2 ** (this.earlyDeaths - 1))
        setTimeout(() => this.respawn(`exited (code ${code}, signal ${signal})`), delay).unref()
      }
    })
  }

  private respawn(why: string): void {
    if (this.stopped) return
    this.restartCount++
    this.o.logger?.warn({ why, restarts: this.restartCount }, 'restarting the runtime')
    this.emit('restart', { why, restarts: this.restartCount })
    this.spawnChild()
  }

  /** Liveness: a runtime whose ready file vanished is hung (or told to go): replace it. */
  private watch(): void {
    clearInterval(this.liveness)
    this.liveness = setInterval(() => {
      const child = this.child
      if (this.stopped || !child) return
      if (existsSync(this.client.readyFile)) {
        this.childReady = true
        this.earlyDeaths = 0
        return
      }
      if (!this.childReady) return // still starting
      this.o.logger?.warn({ pid: child.pid }, 'runtime ready file is gone: killing the runtime')
      this.child = undefined
      child.once('exit', (code, signal) => this.emit('exit', { code, signal }))
      child.kill('SIGKILL')
      this.respawn('ready file removed')
    }, this.o.livenessIntervalMs ?? 250)
    this.liveness.unref()
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child?.kill(signal)
  }

  /** SIGTERM, wait for the exit (SIGKILL after 10 s); no restart. */
  async stop(): Promise<void> {
    this.stopped = true
    clearInterval(this.liveness)
    const child = this.child
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    await new Promise<void>((resolveExit) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      child.once('exit', () => {
        clearTimeout(timer)
        resolveExit()
      })
      child.kill('SIGTERM')
    })
  }
}
