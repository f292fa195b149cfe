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
