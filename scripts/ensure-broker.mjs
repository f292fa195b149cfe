// Test set-up (run by scripts/run-tests.mjs before tap): the tests need a RabbitMQ broker on
// 127.0.0.1:5672 (guest/guest) with the management API on 15672 (connection-cut tests and KEDA's
// `http` protocol use it). Starts `rabbitmq-server` when nothing answers and enables the
// management plugin when its port is closed. Installing the broker is .ci/run's job.
import { spawnSync } from 'node:child_process'
import { has, portOpen, waitPort } from './service-probe.mjs'

export async function ensureBroker() {
  if (process.env.ASYA_TEST_RABBITMQ_URL) return // the caller brings its own broker
  if (!(await portOpen(5672))) {
    if (!has('rabbitmq-server')) {
      console.error('# no RabbitMQ on 127.0.0.1:5672 and no rabbitmq-server to start (apt-get install -y rabbitmq-server, or run .ci/run)')
      return
    }
    console.error('# starting rabbitmq-server')
    spawnSync('rabbitmq-server', ['-detached'], { stdio: 'ignore' })
    if (!(await waitPort(5672, 180))) {
      console.error('# RabbitMQ did not come up on 127.0.0.1:5672')
      return
    }
    spawnSync('rabbitmqctl', ['-q', 'await_startup'], { stdio: 'ignore', timeout: 120_000 })
  }
  if (!(await portOpen(15672)) && has('rabbitmq-plugins')) {
    console.error('# enabling the RabbitMQ management plugin')
    spawnSync('rabbitmq-plugins', ['enable', '--quiet', 'rabbitmq_management'], { stdio: 'ignore', timeout: 120_000 })
    if (!(await waitPort(15672, 60))) console.error('# warning: RabbitMQ management API (15672) not answering; connection-cut tests will fail')
  }
}

const MANAGEMENT = 'http://127.0.0.1:15672'
const AUTH = 'Basic ' + Buffer.from('guest:guest').toString('base64')

/**
 * Deletes the queues that earlier test runs left on the shared broker: every `asya-*` queue with no
 * consumer. Tests delete their actors' queues, but retry tiers (`asya-<a>-retry-<ms>`, created on
 * demand by sidecars) live for an hour and a killed run leaves everything; after a day of runs the
 * broker held hundreds of quorum queues (one Raft member each) and sidecars in the next run started
 * slowly enough to time out. Run only before and after a whole-suite run, when no other test of
 * this checkout is using the broker.
 */
export async function sweepTestQueues() {
  if (process.env.ASYA_TEST_RABBITMQ_URL) return 0 // not our broker
  let list
  try {
    const res = await fetch(`${MANAGEMENT}/api/queues/%2F?columns=name,consumers`, { headers: { authorization: AUTH } })
    if (!res.ok) return 0
    list = await res.json()
  } catch {
    return 0
  }
  let n = 0
  for (const q of list) {
    if (!q.name.startsWith('asya-') || q.consumers > 0) continue
    const del = await fetch(`${MANAGEMENT}/api/queues/%2F/${encodeURIComponent(q.name)}`, { method: 'DELETE', headers: { authorization: AUTH } }).catch(() => undefined)
    if (del?.ok) n++
  }
  if (n > 0) console.error(`# removed ${n} queues left on the shared broker by earlier test runs`)
  return n
}
