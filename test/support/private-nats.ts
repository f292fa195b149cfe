/**
 * A private `nats-server -js` for tests: its own free port, monitoring port and store directory,
 * so tests never depend on (or disturb) the machine's shared server on 4222, and a test can stop
 * and restart it. The file store survives restart() exactly as on a real broker restart. An
 * optional config file body (authorization, TLS) is written beside the store.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, portOpen } from './free-port.js'

export const NATS_SERVER_BIN = process.env.ASYA_TEST_NATS_SERVER ?? 'nats-server'


/** True when a nats-server binary is on PATH (.ci/run installs Debian's package when it is not). */
export function natsServerAvailable(): boolean {
  return spawnSync(NATS_SERVER_BIN, ['--version'], { stdio: 'ignore' }).status === 0
}

export interface PrivateNats {
  url: string
  port: number
  /** Monitoring endpoint (`/jsz`, `/connz`), as KEDA's nats-jetstream scaler reads it. */
  monitorUrl: string
  storeDir: string
  /** PID of the running server (CPU accounting in benchmarks). */
  pid(): number | undefined
  /** Stops the server (SIGTERM, like a broker restart; SIGKILL with `kill`) and waits until it is down. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>
  start(): Promise<void>
  restart(): Promise<void>
  destroy(): Promise<void>
}

export interface PrivateNatsOptions {
  /** Extra nats-server configuration (e.g. an `authorization { ... }` block). */
  config?: string
}

export async function startPrivateNats(options: PrivateNatsOptions = {}): Promise<PrivateNats> {
  const id = randomBytes(3).toString('hex')
  const base = mkdtempSync(join(tmpdir(), `asya-nats-${id}-`))
  const storeDir = join(base, 'store')
  const port = await freePort()
  const monitor = await freePort()
  const confFile = join(base, 'nats.conf')
  writeFileSync(
    confFile,
    [`host: 127.0.0.1`, `port: ${port}`, `http_port: ${monitor}`, `jetstream { store_dir: "${storeDir}" }`, options.config ?? '', ''].join('\n'),
  )
  let child: ChildProcess | undefined

  const start = async (): Promise<void> => {
    child = spawn(NATS_SERVER_BIN, ['-c', confFile], { stdio: 'ignore', detached: true, cwd: base })
    const c = child
    let spawnError: Error | undefined
    c.once('error', (err) => (spawnError = err))
    const end = Date.now() + 30_000
    while (!(await portOpen(port))) {
      if (spawnError) throw new Error(`cannot run ${NATS_SERVER_BIN} (${spawnError.message}); .ci/run installs Debian's nats-server`)
      if (c.exitCode !== null) throw new Error(`private nats-server exited with ${c.exitCode} (config ${confFile})`)
      if (Date.now() > end) throw new Error(`private nats-server on ${port} did not start`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  const stop = async (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> => {
    const c = child
    child = undefined
    if (c && c.exitCode === null && c.pid) {
      const exited = new Promise<void>((r) => c.once('exit', () => r()))
      try {
        process.kill(c.pid, signal)
      } catch {
        /* already gone */
      }
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))])
    }
    const end = Date.now() + 15_000
    while (await portOpen(port)) {
      if (Date.now() > end) throw new Error(`private nats-server on ${port} did not stop`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  await start()
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    monitorUrl: `http://127.0.0.1:${monitor}`,
    storeDir,
    pid: () => child?.pid,
    start,
    stop,
    restart: async () => {
      await stop()
      await start()
    },
    destroy: async () => {
      await stop().catch(() => undefined)
      rmSync(base, { recursive: true, force: true })
    },
  }
}
