import {
  CreateQueueCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs'
import { AsyaError, errorMessage } from '../errors.js'
import { dlqName, queueName } from '../envelope.js'
import type { Logger } from '../logger.js'
import type { QueueProvisioner, QueueRemoval } from './queues.js'

export interface SqsQueuesOptions {
  client: SQSClient
  /** Receives before SQS moves a message to the DLQ (redrive policy). @default 5 */
  maxReceiveCount?: number
  /** Extra attributes both queues are created with (must equal what sidecars expect). */
  attributes?: Record<string, string>
  logger: Logger
}

function errorName(err: unknown): string {
  return (err as { name?: string; Code?: string } | null)?.name ?? ''
}

const isMissing = (err: unknown): boolean => /NonExistentQueue|QueueDoesNotExist/.test(errorName(err))
/** SQS answers CreateQueue on an existing queue with other attributes with QueueNameExists. */
const isMismatch = (err: unknown): boolean => /QueueNameExists|QueueAlreadyExists/.test(errorName(err))

/**
 * Queue provisioning on SQS: the DLQ first (its ARN goes into the main queue's redrive policy),
 * both tagged with the actor and namespace. CreateQueue is idempotent for equal attributes, and
 * fails (never overwrites) for different ones.
 */
export class SqsQueues implements QueueProvisioner {
  readonly transport = 'sqs' as const
  constructor(private readonly o: SqsQueuesOptions) {}

  async ensure(actor: string, namespace: string): Promise<void> {
    const tags = { 'asya.sh/actor': actor, 'asya.sh/namespace': namespace }
    const base = this.o.attributes ?? {}
    try {
      const dlq = await this.o.client.send(new CreateQueueCommand({ QueueName: dlqName(actor), Attributes: { ...base }, tags }))
      const attrs = await this.o.client.send(new GetQueueAttributesCommand({ QueueUrl: dlq.QueueUrl, AttributeNames: ['QueueArn'] }))
      const arn = attrs.Attributes?.QueueArn
      if (!arn) throw new AsyaError('ASYA_ERR_TRANSPORT_CONNECTION', `SQS returned no QueueArn for ${dlqName(actor)}`)
      const redrive = JSON.stringify({ deadLetterTargetArn: arn, maxReceiveCount: this.o.maxReceiveCount ?? 5 })
      await this.o.client.send(new CreateQueueCommand({ QueueName: queueName(actor), Attributes: { ...base, RedrivePolicy: redrive }, tags }))
    } catch (err) {
      if (isMismatch(err)) {
        throw new AsyaError(
          'ASYA_ERR_TRANSPORT_QUEUE_MISMATCH',
          `SQS queue ${queueName(actor)} or ${dlqName(actor)} exists with other attributes; left as is: ${errorMessage(err)}`,
          { cause: err, details: { queue: queueName(actor) } },
        )
      }
      if (err instanceof AsyaError) throw err
      throw new AsyaError('ASYA_ERR_TRANSPORT_CONNECTION', `SQS CreateQueue for ${queueName(actor)} failed: ${errorMessage(err)}`, { cause: err })
    }
  }

  private async url(name: string): Promise<string | undefined> {
    try {
      return (await this.o.client.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl
    } catch (err) {
      if (isMissing(err)) return undefined
      throw err
    }
  }

  async remove(actor: string): Promise<QueueRemoval> {
    const out: QueueRemoval = { deleted: [], kept: [] }
    const main = await this.url(queueName(actor))
    if (main) {
      await this.o.client.send(new DeleteQueueCommand({ QueueUrl: main }))
      out.deleted.push(queueName(actor))
    }
    const dlq = await this.url(dlqName(actor))
    if (dlq) {
      const a = await this.o.client.send(
        new GetQueueAttributesCommand({ QueueUrl: dlq, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
      )
      const n = Number(a.Attributes?.ApproximateNumberOfMessages ?? 0) + Number(a.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
      if (n > 0) out.kept.push({ queue: dlqName(actor), reason: `holds ${n} dead-lettered messages` })
      else {
        await this.o.client.send(new DeleteQueueCommand({ QueueUrl: dlq }))
        out.deleted.push(dlqName(actor))
      }
    }
    return out
  }

  async close(): Promise<void> {
    // The SQS client is owned by the caller.
  }
}
