/**
 * `asya actors` and `asya actors describe NAME`: every workload whose pod template carries
 * `asya.sh/actor`, read through the Kubernetes API, with its queue state from the broker.
 */
import type { V1Deployment, V1StatefulSet } from '@kubernetes/client-node'
import { Command, Option } from 'commander'
import { parsePodAnnotations, parseWorkloadAnnotations } from '../../annotations.js'

import { brokerOptions, Brokers, type BrokerFlags } from '../brokers.js'
import { withExamples } from '../help.js'
import type { CliIo } from '../io.js'
import { connectKube, type Kube, type KubeFlags } from '../kube.js'
import { count, outputOption, structured, table } from '../output.js'
import { ACTOR_LABEL, ANNOTATION, dlqActor, dlqName, queueName } from '../../names.js'

export interface QueueView {
  name: string
  messages?: number
  inFlight?: number
  consumers?: number
  /** Why the numbers are missing (queue missing, broker unreachable). */
  error?: string
}

export interface ActorView {
  actor: string
  namespace: string
  workload: { kind: 'Deployment' | 'StatefulSet'; name: string }
  transport: string
  replicas: { ready: number; desired: number }
  queue: QueueView
  dlq: QueueView
  status: string
  handler?: string
  handlerMode?: string
  scaling?: { mode: string; min: number; max: number }
}

type Workload = (V1Deployment | V1StatefulSet) & { kind?: string }

export interface ListedWorkload {
  kind: 'Deployment' | 'StatefulSet'
  obj: Workload
  actor: string
}

export function kubeOptions(cmd: Command, withAll = true): Command {
  cmd.option('-n, --namespace <ns>', 'namespace (default: the context\'s, else "default")')
  if (withAll) cmd.option('-A, --all-namespaces', 'every namespace')
  return cmd.option('--context <name>', 'kubeconfig context to use').option('--kubeconfig <file>', 'kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)')
}

/** Every labelled Deployment and StatefulSet in scope, sorted by namespace then actor. */
export async function listActorWorkloads(kube: Kube): Promise<ListedWorkload[]> {
  const ns = kube.scope
  let deployments: V1Deployment[]
  let statefulSets: V1StatefulSet[]
  try {
    ;[deployments, statefulSets] = await Promise.all([
      (ns === undefined ? kube.apps.listDeploymentForAllNamespaces() : kube.apps.listNamespacedDeployment({ namespace: ns })).then((l) => l.items),
      (ns === undefined ? kube.apps.listStatefulSetForAllNamespaces() : kube.apps.listNamespacedStatefulSet({ namespace: ns })).then((l) => l.items),
    ])
  } catch (err) {
    throw kube.fail(err, `listing Deployments and StatefulSets in ${ns === undefined ? 'all namespaces' : `namespace ${ns}`}`)
  }
  const out: ListedWorkload[] = []
  for (const [kind, items] of [['Deployment', deployments], ['StatefulSet', statefulSets]] as const) {
    for (const obj of items) {
      const actor = obj.spec?.template?.metadata?.labels?.[ACTOR_LABEL]
      if (typeof actor === 'string' && actor !== '') out.push({ kind, obj, actor })
    }
  }
  return out.sort((a, b) => (a.obj.metadata?.namespace ?? '').localeCompare(b.obj.metadata?.namespace ?? '') || a.actor.localeCompare(b.actor) || a.kind.localeCompare(b.kind))
}

/** The transport an actor uses: its asya.sh/transport annotation, else the default. */
export function actorTransport(w: ListedWorkload, defaultTransport: string): string {
  const t = w.obj.spec?.template?.metadata?.annotations?.[ANNOTATION.transport] ?? w.obj.metadata?.annotations?.[ANNOTATION.transport]
  return typeof t === 'string' && t.trim() !== '' ? t.trim() : defaultTransport
}

async function inspect(brokers: Brokers, transport: string, actor: string, warn: (m: string) => void): Promise<QueueView> {
  const view: QueueView = { name: queueName(actor) }
  try {
    const tr = await brokers.get(transport)
    const s = await tr.inspectQueue(actor)
    view.messages = s.messages
    if (s.inFlight !== undefined) view.inFlight = s.inFlight
    if (s.consumers !== undefined) view.consumers = s.consumers
  } catch (err) {
    const e = brokers.fail(transport, err, `queue ${view.name}`)
    view.error = e.message
    warn(e.message)
  }
  return view
}

export async function actorView(w: ListedWorkload, brokers: Brokers | undefined, warn: (m: string) => void): Promise<ActorView> {
  const md = w.obj.metadata ?? {}
  const template = w.obj.spec?.template?.metadata ?? {}
  const transport = actorTransport(w, brokers?.defaultTransport ?? 'rabbitmq')
  const pod = parsePodAnnotations(template.labels, template.annotations).value
  const scaling = parseWorkloadAnnotations(md.annotations, template.annotations, 'rabbitmq').value
  const none = (name: string): QueueView => ({ name })
  const [queue, dlq] = brokers
    ? await Promise.all([inspect(brokers, transport, w.actor, warn), inspect(brokers, transport, dlqActor(w.actor), warn)])
    : [none(queueName(w.actor)), none(dlqName(w.actor))]
  return {
    actor: w.actor,
    namespace: md.namespace ?? '',
    workload: { kind: w.kind, name: md.name ?? '' },
    transport,
    replicas: { ready: w.obj.status?.readyReplicas ?? 0, desired: w.obj.spec?.replicas ?? 1 },
    queue,
    dlq,
    status: md.annotations?.[ANNOTATION.status] ?? '-',
    ...(pod?.handler !== undefined ? { handler: pod.handler } : {}),
    ...(pod ? { handlerMode: pod.handlerMode ?? 'payload' } : {}),
    ...(scaling ? { scaling: { mode: scaling.scaling, min: scaling.minReplicas, max: scaling.maxReplicas } } : {}),
  }
}

/** The table `asya actors` prints (pure: views in, text out). */
export function actorsTable(views: readonly ActorView[], o: { allNamespaces: boolean; wide: boolean }): string {
  const head = [
    ...(o.allNamespaces ? ['NAMESPACE'] : []),
    'ACTOR', 'WORKLOAD', 'TRANSPORT', 'READY', 'QUEUE', 'IN-FLIGHT', 'DLQ', 'STATUS',
    ...(o.wide ? ['CONSUMERS', 'HANDLER', 'MODE', 'SCALING'] : []),
  ]
  const rows = views.map((v) => [
    ...(o.allNamespaces ? [v.namespace] : []),
    v.actor,
    `${v.workload.kind.toLowerCase()}/${v.workload.name}`,
    v.transport,
    `${v.replicas.ready}/${v.replicas.desired}`,
    v.queue.error ? '?' : count(v.queue.messages),
    v.queue.error ? '?' : count(v.queue.inFlight),
    v.dlq.error ? '?' : count(v.dlq.messages),
    v.status,
    ...(o.wide ? [v.queue.error ? '?' : count(v.queue.consumers), v.handler ?? '-', v.handlerMode ?? '-', v.scaling ? (v.scaling.mode === 'off' ? 'off' : `${v.scaling.min}-${v.scaling.max}`) : '-'] : []),
  ])
  return table(head, rows)
}

interface ActorsFlags extends KubeFlags, BrokerFlags {
  output?: 'wide' | 'json' | 'yaml'
  queues?: boolean
}

export function registerActors(program: Command, io: CliIo): void {
  const actors = program
    .command('actors')
    .summary('list actors: workload, transport, replicas, queue depth, in-flight, DLQ, status')
    .description(
      'Lists every Deployment and StatefulSet whose pod template is labelled asya.sh/actor, with its transport, ready/desired replicas, the depth and in-flight count of its queue, the depth of its dead-letter queue and the status the controller wrote (asya.sh/status).\n\n' +
        'Queue numbers come from the broker, configured like the system process (ASYA_TRANSPORT, ASYA_RABBITMQ_*, ASYA_SQS_ENDPOINT, ...) or by flags; `-` means the broker cannot tell, `?` that it could not be asked (the reason is on stderr). In-flight on RabbitMQ comes from its management API.',
    )
    .addOption(outputOption())
    .addOption(new Option('--no-queues', 'skip the broker: Kubernetes state only'))
    .enablePositionalOptions()
  kubeOptions(actors)
  brokerOptions(actors)
  actors.action(async (flags: ActorsFlags) => {
    const kube = connectKube(flags, io.env)
    const workloads = await listActorWorkloads(kube)
    const brokers = flags.queues === false ? undefined : new Brokers(flags, io.env)
    const warned = new Set<string>()
    const warn = (m: string): void => {
      if (!warned.has(m)) io.stderr(`warning: ${m}\n`)
      warned.add(m)
    }
    try {
      const views: ActorView[] = []
      for (const w of workloads) views.push(await actorView(w, brokers, warn))
      if (flags.output === 'json' || flags.output === 'yaml') {
        io.stdout(structured(flags.output, { kind: 'ActorList', items: views }))
        return
      }
      if (views.length === 0) {
        io.stderr(`No actors found in ${kube.scope === undefined ? 'any namespace' : `namespace ${kube.scope}`}.\n`)
        return
      }
      io.stdout(actorsTable(views, { allNamespaces: kube.scope === undefined, wide: flags.output === 'wide' }))
    } finally {
      await brokers?.close()
    }
  })
  withExamples(actors, [
    ['asya actors', 'actors in the current namespace'],
    ['asya actors -A -o wide', 'every namespace, with consumers, handler, mode, scaling'],
    ['asya actors -n team-a -o json | jq ".items[].queue"', 'for scripts'],
    ['asya actors --context prod --no-queues', 'Kubernetes state only'],
  ])

  const describe = actors
    .command('describe')
    .summary('one actor in detail: effective annotations, ScaledObject, Events, sidecar metrics')
    .description(
      'Shows one actor: its workload, replicas, queues, every asya.sh/* annotation with its effective value (defaults filled in, invalid values named), the KEDA ScaledObject, recent Events of the workload and a summary of its sidecars\' metrics (read through the API server\'s pod proxy, port 8080).',
    )
    .argument('<name>', 'actor name (the asya.sh/actor label)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['json', 'yaml']))
    .addOption(new Option('--no-queues', 'skip the broker'))
    .addOption(new Option('--no-metrics', 'skip the sidecars\' metrics'))
  kubeOptions(describe)
  brokerOptions(describe)
  describe.action(async (name: string, flags: ActorsFlags & { metrics?: boolean }) => {
    const { describeActor } = await import('./actors-describe.js')
    await describeActor(name, flags, io)
  })
  withExamples(describe, [
    ['asya actors describe classify', 'in the current namespace'],
    ['asya actors describe classify -n team-a -o yaml', 'as YAML, for scripts'],
  ])
}

export type { ActorsFlags }
