import {
  CreateQueueCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListQueueTagsCommand,
  SetQueueAttributesCommand,
  TagQueueCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs'
import { AsyaError, errorMessage, errors } from '../errors.js'
import { SQS_TAG, dlqName, queueName } from '../names.js'
import type { Logger } from '../logger.js'
import type { QueueProvisioner, QueueRemoval, QueueWants } from './queues.js'
import { planSqsAttributes, sqsVisibilityFor } from './sqs-attributes.js'

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
 * both tagged with the actor and namespace. A queue that already exists with other attributes (a
 * sidecar created it before the controller, without a redrive policy) is brought to the
 * configured ones where that is safe (sqs-attributes.ts); what is not safe is reported.
 */
export class SqsQueues implements QueueProvisioner {
  readonly transport = 'sqs' as const
  /** Queue URLs as SQS returned them (they carry the account id KEDA needs). */
  private readonly urls = new Map<string, string>()
  constructor(private readonly o: SqsQueuesOptions) {}

  /** URL of `asya-<actor>` as SQS returned it on the last ensure, if any. */
  queueUrl(actor: string): string | undefined {
    return this.urls.get(actor)
  }

  async ensure(actor: string, namespace: string, want: QueueWants = {}): Promise<void> {
    const tags = { [SQS_TAG.actor]: actor, [SQS_TAG.namespace]: namespace }
    const base = this.o.attributes ?? {}
    try {
      const dlqUrl = await this.createOrReconcile(dlqName(actor), { ...base }, tags)
      const attrs = await this.o.client.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['QueueArn'] }))
      const arn = attrs.Attributes?.QueueArn
      if (!arn) throw new errors.ASYA_ERR_TRANSPORT_CONNECTION(`SQS returned no QueueArn for ${dlqName(actor)}`)
      const redrive = JSON.stringify({ deadLetterTargetArn: arn, maxReceiveCount: this.o.maxReceiveCount ?? 5 })
      const main: Record<string, string> = { ...base, RedrivePolicy: redrive }
      if (want.timeoutSeconds !== undefined) main.VisibilityTimeout = String(sqsVisibilityFor(want.timeoutSeconds))
      this.urls.set(actor, await this.createOrReconcile(queueName(actor), main, tags))
    } catch (err) {
      if (err instanceof AsyaError) throw err
      throw new errors.ASYA_ERR_TRANSPORT_CONNECTION(`SQS CreateQueue for ${queueName(actor)} failed: ${errorMessage(err)}`, { cause: err })
    }
  }

  /**
   * CreateQueue, which SQS answers with the URL when the queue exists with equal attributes;
   * when it exists with others, the safe differences are set and the rest reported
   * (ASYA_ERR_TRANSPORT_QUEUE_MISMATCH naming only what was left as is).
   */
  private async createOrReconcile(name: string, desired: Record<string, string>, tags: Record<string, string>): Promise<string> {
    let url: string | undefined
    try {
      url = (await this.o.client.send(new CreateQueueCommand({ QueueName: name, Attributes: desired, tags }))).QueueUrl
    } catch (err) {
      if (!isMismatch(err)) throw err
    }
    if (url !== undefined) {
      await this.ensureTags(url, tags)
      return url
    }
    url = await this.url(name)
    if (url === undefined) throw new errors.ASYA_ERR_TRANSPORT_QUEUE_MISSING(`SQS queue ${name}: it was deleted while being reconciled; retried on the next pass`)
    const current: Record<string, string | undefined> = (await this.o.client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['All'] }))).Attributes ?? {}
    const plan = planSqsAttributes(current, desired)
    if (Object.keys(plan.set).length > 0) {
      await this.o.client.send(new SetQueueAttributesCommand({ QueueUrl: url, Attributes: plan.set }))
      this.o.logger.info({ queue: name, set: plan.set, was: Object.fromEntries(Object.keys(plan.set).map((k) => [k, current[k] ?? null])) }, 'existing SQS queue brought to the configured attributes')
    }
    await this.ensureTags(url, tags)
    if (plan.cannot.length > 0) {
      throw new errors.ASYA_ERR_TRANSPORT_QUEUE_MISMATCH(`SQS queue ${name}`, `attributes not changed automatically: ${plan.cannot.join('; ')}`, {
        details: { queue: name, cannot: plan.cannot, set: Object.keys(plan.set) },
      })
    }
    return url
  }

  /** Tags on creation are ignored by SQS for an existing queue: set the missing ones. */
  private async ensureTags(url: string, tags: Record<string, string>): Promise<void> {
    const have = (await this.o.client.send(new ListQueueTagsCommand({ QueueUrl: url }))).Tags ?? {}
    const missing = Object.fromEntries(Object.entries(tags).filter(([k, v]) => have[k] !== v))
    if (Object.keys(missing).length > 0) await this.o.client.send(new TagQueueCommand({ QueueUrl: url, Tags: missing }))
  }

  private async url(name: string): Promise<string | undefined> {
    try {
      return (await this.o.client.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl
    } catch (err) {
      if (isMissing(err)) return undefined
      throw err
    }
  }

  async remove(actor: string, options: { force?: boolean } = {}): Promise<QueueRemoval> {
    const out: QueueRemoval = { deleted: [], kept: [] }
    const count = async (url: string): Promise<number> => {
      const a = await this.o.client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'] }))
      return Number(a.Attributes?.ApproximateNumberOfMessages ?? 0) + Number(a.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0) + Number(a.Attributes?.ApproximateNumberOfMessagesDelayed ?? 0)
    }
    const main = await this.url(queueName(actor))
    if (main) {
      const n = options.force ? 0 : await count(main)
      if (n > 0) out.kept.push({ queue: queueName(actor), reason: `holds about ${n} messages; deleted once empty (asya.sh/queue-retention: force-delete deletes it anyway)` })
      else {
        await this.o.client.send(new DeleteQueueCommand({ QueueUrl: main }))
        out.deleted.push(queueName(actor))
      }
    }
    const dlq = await this.url(dlqName(actor))
    if (dlq) {
      const n = await count(dlq)
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
