/** Test helpers for the shared RabbitMQ broker (127.0.0.1:5672, guest/guest; .ci/run starts one). */
import { randomBytes } from 'node:crypto'
import { RabbitMqTransport, amqpUrl } from '../../src/transport/rabbitmq-transport.js'

export const RABBITMQ_URL = process.env.ASYA_TEST_RABBITMQ_URL ?? amqpUrl({ host: '127.0.0.1', port: 5672 })
export const RABBITMQ_MANAGEMENT = process.env.ASYA_TEST_RABBITMQ_MANAGEMENT ?? 'http://127.0.0.1:15672'

/** A per-test exchange keeps concurrent test files from seeing each other's routing. */
export function testExchange(prefix = 'asya-test'): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`
}

export function rabbitTransport(o: { exchange?: string; connectionName?: string; url?: string } = {}): RabbitMqTransport {
  return new RabbitMqTransport({
    url: o.url ?? RABBITMQ_URL,
    exchange: o.exchange ?? 'asya-test',
    connectionName: o.connectionName ?? `asya-test-${randomBytes(4).toString('hex')}`,
    reconnectBackoff: { initialMs: 100, maxMs: 2000 },
    publishTimeoutMs: 20_000,
    managementUrl: RABBITMQ_MANAGEMENT,
  })
}

/** Force-closes every broker connection whose client-provided name starts with `prefix` (management API). */
export async function closeConnections(prefix: string): Promise<number> {
  const auth = 'Basic ' + Buffer.from('guest:guest').toString('base64')
  const res = await fetch(`${RABBITMQ_MANAGEMENT}/api/connections`, { headers: { authorization: auth } })
  if (!res.ok) throw new Error(`management API: ${res.status}`)
  const list = (await res.json()) as Array<{ name: string; client_properties?: { connection_name?: string } }>
  let n = 0
  for (const c of list) {
    if (!c.client_properties?.connection_name?.startsWith(prefix)) continue
    const del = await fetch(`${RABBITMQ_MANAGEMENT}/api/connections/${encodeURIComponent(c.name)}`, {
      method: 'DELETE',
      headers: { authorization: auth, 'x-reason': 'asya test: connection cut' },
    })
    if (del.ok || del.status === 404) n++
  }
  return n
}
