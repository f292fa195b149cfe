import type { Channel } from 'amqplib'
import { dlqName, queueName } from '../envelope.js'

/**
 * Declares an actor's RabbitMQ topology. TEMPORARY until src/transport/rabbitmq-topology.ts lands:
 * the controller must declare with exactly the sidecars' arguments, so this delegates there.
 */
export async function rabbitDeclare(ch: Channel, actor: string, exchange: string): Promise<void> {
  await ch.assertExchange(exchange, 'topic', { durable: true })
  await ch.assertQueue(dlqName(actor), { durable: true })
  await ch.assertQueue(queueName(actor), { durable: true })
  await ch.bindQueue(queueName(actor), exchange, actor)
}
