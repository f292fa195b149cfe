/**
 * A private RabbitMQ node for tests that stop and start the broker (restarting the shared broker
 * would break every other test running at the same time). Same `rabbitmq-server` binary, its own
 * node name, ports and data directory; durable queues and persistent messages survive restart()
 * exactly as on a real broker restart.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { amqpUrl } from '../../src/transport/rabbitmq-transport.js'
import { freePort, portOpen } from './free-port.js'



export interface PrivateRabbit {
  url: string
  managementUrl: string
  port: number
  /** Stops the node (like a broker crash/restart) and waits until it is down. */
  stop(): Promise<void>
  start(): Promise<void>
  restart(): Promise<void>
  /** Force-closes every client connection (management API), like a network cut. */
  closeAllConnections(): Promise<number>
  /** Stops and removes the data directory. */
  destroy(): Promise<void>
}

export interface PrivateRabbitOptions {
  /**
   * Erlang terms for the `rabbit` application (advanced.config), e.g.
   * `{dead_letter_worker_publisher_confirm_timeout, 2000}` to make the quorum dead-letter worker
   * re-send held messages within seconds instead of 3 minutes.
   */
  rabbitAppEnv?: string[]
}

export async function startPrivateRabbit(options: PrivateRabbitOptions = {}): Promise<PrivateRabbit> {
  const id = randomBytes(3).toString('hex')
  const base = mkdtempSync(join(tmpdir(), `asya-rmq-${id}-`))
  const port = await freePort()
  const dist = await freePort()
  const mgmt = await freePort()
  const node = `asya-test-${id}@localhost`
  // rabbitmq-server does not create its data and log directories itself.
  mkdirSync(join(base, 'mnesia'), { recursive: true })
  mkdirSync(join(base, 'log'), { recursive: true })
  writeFileSync(join(base, 'enabled_plugins'), '[rabbitmq_management].\n')
  writeFileSync(
    join(base, 'rabbitmq.conf'),
    [`listeners.tcp.default = 127.0.0.1:${port}`, `management.tcp.port = ${mgmt}`, `management.tcp.ip = 127.0.0.1`, 'loopback_users = none', 'log.console = false', ''].join('\n'),
  )
  const advanced = options.rabbitAppEnv?.length ? join(base, 'advanced.config') : undefined
  if (advanced) writeFileSync(advanced, `[{rabbit, [${options.rabbitAppEnv?.join(', ')}]}].\n`)
  // As root, the rabbitmq-server wrapper drops to the `rabbitmq` user: hand it the directory.
  if (process.getuid?.() === 0) spawnSync('chown', ['-R', 'rabbitmq:rabbitmq', base], { stdio: 'ignore' })
  const env = {
    ...process.env,
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(dist),
    RABBITMQ_MNESIA_BASE: join(base, 'mnesia'),
    RABBITMQ_LOG_BASE: join(base, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(base, 'enabled_plugins'),
    RABBITMQ_CONFIG_FILE: join(base, 'rabbitmq.conf'),
    RABBITMQ_PID_FILE: join(base, 'pid'),
    ...(advanced ? { RABBITMQ_ADVANCED_CONFIG_FILE: advanced } : {}),
  }
  let child: ChildProcess | undefined

  const start = async (): Promise<void> => {
    child = spawn('rabbitmq-server', [], { env, stdio: 'ignore', detached: true, cwd: base })
    const end = Date.now() + 90_000
    while (!(await portOpen(port))) {
      if (Date.now() > end) throw new Error(`private RabbitMQ ${node} did not start`)
      await new Promise((r) => setTimeout(r, 250))
    }
  }
  const stop = async (): Promise<void> => {
    spawnSync('rabbitmqctl', ['-n', node, 'stop'], { env, stdio: 'ignore', timeout: 60_000 })
    const c = child
    child = undefined
    if (c && c.exitCode === null && c.pid) {
      try {
        process.kill(-c.pid, 'SIGKILL')
      } catch {
        /* already gone */
      }
    }
    const end = Date.now() + 30_000
    while (await portOpen(port)) {
      if (Date.now() > end) throw new Error(`private RabbitMQ ${node} did not stop`)
      await new Promise((r) => setTimeout(r, 200))
    }
  }
  await start()
  return {
    url: amqpUrl({ host: '127.0.0.1', port }),
    managementUrl: `http://127.0.0.1:${mgmt}`,
    port,
    start,
    stop,
    closeAllConnections: async () => {
      const auth = 'Basic ' + Buffer.from('guest:guest').toString('base64')
      const res = await fetch(`http://127.0.0.1:${mgmt}/api/connections`, { headers: { authorization: auth } })
      const list = (await res.json()) as Array<{ name: string }>
      for (const c of list) {
        await fetch(`http://127.0.0.1:${mgmt}/api/connections/${encodeURIComponent(c.name)}`, { method: 'DELETE', headers: { authorization: auth } })
      }
      return list.length
    },
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
