/**
 * deploy/: every kustomization renders with the real `kubectl kustomize`; built-in objects pass
 * their Kubernetes schemas (kubernetes-models); and the rules we promise hold (pinned images,
 * hardened containers, least-privilege RBAC, a webhook that cannot lock up the cluster).
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { parseAllDocuments } from 'yaml'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; annotations?: Record<string, string> }; [k: string]: unknown }
type Container = { name: string; image?: string; resources?: { requests?: object; limits?: object }; securityContext?: Record<string, unknown> }

const TARGETS = ['base', 'overlays/rabbitmq', 'overlays/sqs', 'overlays/nats', 'overlays/cert-manager', 'overlays/prometheus', 'overlays/dev', 'overlays/example-actor', 'overlays/gateway', 'overlays/claim-check']

function render(target: string): Obj[] {
  const out = execFileSync('kubectl', ['kustomize', join(root, 'deploy', target)], { encoding: 'utf8' })
  return parseAllDocuments(out).map((d) => d.toJSON() as Obj)
}

/** kubernetes-models class for a built-in kind, or undefined for CRDs (cert-manager, monitoring, keda). */
async function modelFor(o: Obj): Promise<(new (data: Obj) => { validate(): void }) | undefined> {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion]
  const builtin = ['', 'apps', 'policy', 'rbac.authorization.k8s.io', 'admissionregistration.k8s.io', 'coordination.k8s.io']
  if (!builtin.includes(group as string)) return undefined
  const path = group === '' ? `kubernetes-models/${version}/${o.kind}` : `kubernetes-models/${group}/${version}/${o.kind}`
  const mod = (await import(path)) as Record<string, new (data: Obj) => { validate(): void }>
  return mod[o.kind]
}

function containersOf(o: Obj): Container[] {
  const spec = (o.spec as { template?: { spec?: { containers?: Container[]; initContainers?: Container[] } } } | undefined)?.template?.spec
  return [...(spec?.containers ?? []), ...(spec?.initContainers ?? [])]
}

const rendered = new Map<string, Obj[]>()
for (const target of TARGETS) {
  t.test(`${target} renders and validates`, async (t) => {
    const objs = render(target)
    rendered.set(target, objs)
    t.ok(objs.length > 0, 'objects rendered')
    let validated = 0
    for (const o of objs) {
      const Model = await modelFor(o)
      if (!Model) continue
      t.doesNotThrow(() => new Model(o).validate(), `${o.kind}/${o.metadata.name} matches the ${o.apiVersion} schema`)
      validated++
    }
    t.ok(validated > 0, `${validated} built-in objects schema-validated`)
  })
}

type PodSpec = { securityContext?: Record<string, unknown>; containers?: Container[]; initContainers?: Container[]; volumes?: Array<{ name: string }> }

/** The hardening every container we ship or show must have (the system Deployment and the example actor alike). */
function checkHardened(t: Test, where: string, pod: PodSpec, c: Container): void {
  const sc = c.securityContext ?? {}
  const podSc = pod.securityContext ?? {}
  t.equal(sc.allowPrivilegeEscalation, false, `${where}: no privilege escalation`)
  t.equal(sc.readOnlyRootFilesystem, true, `${where}: read-only root filesystem`)
  t.equal(sc.runAsNonRoot ?? podSc.runAsNonRoot, true, `${where}: non-root`)
  t.ok(typeof (sc.runAsUser ?? podSc.runAsUser) === 'number' && (sc.runAsUser ?? podSc.runAsUser) !== 0, `${where}: a numeric non-zero user (runAsNonRoot is checked against it)`)
  t.equal(((sc.seccompProfile ?? podSc.seccompProfile) as { type?: string } | undefined)?.type, 'RuntimeDefault', `${where}: seccomp RuntimeDefault`)
  t.same((sc.capabilities as { drop?: string[] } | undefined)?.drop, ['ALL'], `${where}: all capabilities dropped`)
  t.notOk((sc.capabilities as { add?: string[] } | undefined)?.add?.length, `${where}: no capability added`)
  t.notOk(sc.privileged, `${where}: not privileged`)
}

function podSpecOf(o: Obj): PodSpec | undefined {
  return (o.spec as { template?: { spec?: PodSpec } } | undefined)?.template?.spec
}

t.test('rules: containers hardened and sized, images pinned (system Deployment and example actor)', async (t) => {
  let checked = 0
  for (const target of TARGETS) {
    for (const o of rendered.get(target) ?? render(target)) {
      const pod = podSpecOf(o)
      for (const c of containersOf(o)) {
        const where = `${target} ${o.kind}/${o.metadata.name} container ${c.name}`
        t.ok(c.image && !c.image.endsWith(':latest') && c.image.includes(':'), `${where}: pinned image (${c.image})`)
        t.ok(c.resources?.requests && c.resources.limits, `${where}: requests and limits`)
        checkHardened(t, where, pod ?? {}, c)
        checked++
      }
    }
  }
  t.ok(checked >= TARGETS.length, `${checked} containers checked`)
})

t.test('the example actor as the webhook admits it: runtime and injected sidecar both hardened, the runtime can write what it must', async (t) => {
  const { readWebhookConfig } = await import('../../src/system/config.js')
  const { injectPod } = await import('../../webhook/inject.js')
  const { SOCKET_DIR } = await import('../../src/names.js')
  const base = rendered.get('base') ?? render('base')
  const env = (base.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'asya-config')?.data ?? {}) as Record<string, string>
  const actor = (rendered.get('overlays/example-actor') ?? render('overlays/example-actor')).find((o) => o.kind === 'Deployment') as Obj
  const template = (actor.spec as { template: { metadata: Record<string, unknown>; spec: PodSpec } }).template
  const result = injectPod({ apiVersion: 'v1', kind: 'Pod', metadata: structuredClone(template.metadata), spec: structuredClone(template.spec) }, { config: readWebhookConfig(env), namespace: 'ml' })
  t.equal(result.kind, 'injected', 'the example is injected')
  if (result.kind !== 'injected') return
  t.same(result.warnings, [], 'without a warning')
  const pod = result.pod.spec as PodSpec & { automountServiceAccountToken?: boolean }
  const all = [...(pod.containers ?? []), ...(pod.initContainers ?? [])]
  t.same(all.map((c) => c.name).sort(), ['asya-sidecar', 'model'])
  for (const c of all) checkHardened(t, `injected example pod container ${c.name}`, pod, c)
  t.equal(pod.automountServiceAccountToken, false, 'no API token in an actor pod')
  // Read-only root: every path the runtime writes is a volume (the socket and ready file; scratch).
  const model = all.find((c) => c.name === 'model') as Container & { volumeMounts?: Array<{ mountPath: string; readOnly?: boolean }> }
  const writable = (model.volumeMounts ?? []).filter((m) => m.readOnly !== true).map((m) => m.mountPath)
  t.ok(writable.includes(SOCKET_DIR), `the runtime writes its socket into a volume (${SOCKET_DIR})`)
  t.ok(writable.includes('/tmp'), 'and has a scratch volume at /tmp')
})

t.test('rules: RBAC without wildcards; Secrets only in asya-system', async (t) => {
  for (const target of TARGETS) {
    for (const o of rendered.get(target) ?? render(target)) {
      if (o.kind !== 'ClusterRole' && o.kind !== 'Role') continue
      for (const rule of (o.rules as Array<{ apiGroups?: string[]; resources?: string[]; verbs?: string[] }>) ?? []) {
        for (const field of [rule.apiGroups, rule.resources, rule.verbs]) t.notOk(field?.includes('*'), `${target} ${o.kind}/${o.metadata.name}: no wildcard in ${JSON.stringify(rule)}`)
        if (o.kind === 'ClusterRole') t.notOk(rule.resources?.includes('secrets'), `${target}: no cluster-wide Secret access`)
      }
    }
  }
})

t.test('rules: the webhook excludes its own namespace and kube-system, is bounded and side-effect free', async (t) => {
  for (const target of TARGETS.filter((x) => x !== 'overlays/example-actor')) {
    const objs = rendered.get(target) ?? render(target)
    const mwc = objs.find((o) => o.kind === 'MutatingWebhookConfiguration')
    t.ok(mwc, `${target}: MutatingWebhookConfiguration present`)
    for (const w of (mwc?.webhooks as Array<Record<string, any>>) ?? []) {
      const excluded = (w.namespaceSelector?.matchExpressions ?? []).filter((e: { operator: string }) => e.operator === 'NotIn').flatMap((e: { values: string[] }) => e.values)
      for (const ns of ['kube-system', 'asya-system']) t.ok(excluded.includes(ns), `${target}: excludes ${ns}`)
      t.same(w.objectSelector?.matchExpressions, [{ key: 'asya.sh/actor', operator: 'Exists' }], `${target}: only pods labelled asya.sh/actor`)
      t.ok(w.timeoutSeconds <= 5, `${target}: timeoutSeconds ≤ 5`)
      t.equal(w.sideEffects, 'None')
      t.equal(w.reinvocationPolicy, 'IfNeeded')
      t.equal(w.matchPolicy, 'Equivalent')
      t.same(w.admissionReviewVersions, ['v1'])
      t.equal(w.clientConfig?.service?.namespace, 'asya-system')
    }
    const pdb = objs.find((o) => o.kind === 'PodDisruptionBudget')
    t.ok(pdb, `${target}: PodDisruptionBudget present`)
  }
  const base = rendered.get('base') ?? render('base')
  const dep = base.find((o) => o.kind === 'Deployment') as Obj & { spec: { replicas: number } }
  t.equal(dep.spec.replicas, 2, 'two replicas in base')
})

t.test('overlays do what they say', async (t) => {
  // The system's own objects (the end actors ship Deployments and a ServiceAccount beside them).
  const get = (target: string, kind: string): Obj | undefined => {
    const objs = (rendered.get(target) ?? render(target)).filter((o) => o.kind === kind)
    return objs.find((o) => o.metadata.name === 'asya-system') ?? objs.find((o) => o.metadata.name === 'asya-config') ?? objs[0]
  }
  const cm = (target: string): Record<string, string> => (get(target, 'ConfigMap')?.data ?? {}) as Record<string, string>
  t.equal(cm('overlays/sqs').ASYA_TRANSPORT, 'sqs')
  t.ok(get('overlays/sqs', 'ServiceAccount')?.metadata.annotations?.['eks.amazonaws.com/role-arn'], 'IRSA role on the ServiceAccount')
  t.equal(cm('overlays/rabbitmq').ASYA_RABBITMQ_CREDENTIALS_SECRET, 'asya-rabbitmq')
  t.equal(cm('overlays/nats').ASYA_TRANSPORT, 'nats')
  t.equal(cm('overlays/nats').ASYA_NATS_CREDENTIALS_SECRET, 'asya-nats')
  t.equal(cm('overlays/nats').ASYA_RABBITMQ_HOST, undefined, 'no RabbitMQ settings on the NATS overlay')
  const natsEnv = containersOf(get('overlays/nats', 'Deployment') as Obj)[0] as unknown as { env: Array<{ name: string; value?: string; valueFrom?: unknown }> }
  const natsPw = natsEnv.env.find((e) => e.name === 'ASYA_NATS_PASSWORD')
  t.ok(natsPw?.valueFrom && natsPw.value === undefined, 'NATS password from a secretKeyRef, never inline')
  // The overlay's settings are what the system process accepts (the controller reads them at start).
  const { readControllerTransports } = await import('../../src/controller/config.js')
  const tr = readControllerTransports({ ...cm('overlays/nats'), ASYA_NATS_USERNAME: 'u', ASYA_NATS_PASSWORD: 'p' })
  t.equal(tr.defaultTransport, 'nats')
  t.same(tr.nats?.connection.servers, ['nats://nats.nats.svc:4222'])
  t.equal(tr.nats?.monitoringSecret?.name, 'asya-nats', 'KEDA reads the monitoring endpoint from the same Secret')
  const rmqEnv = containersOf(get('overlays/rabbitmq', 'Deployment') as Obj)[0] as unknown as { env: Array<{ name: string; value?: string; valueFrom?: unknown }> }
  const pw = rmqEnv.env.find((e) => e.name === 'ASYA_RABBITMQ_PASSWORD')
  t.ok(pw?.valueFrom && pw.value === undefined, 'password from a secretKeyRef, never inline')
  t.equal(cm('overlays/cert-manager').ASYA_WEBHOOK_CERT_MODE, 'files')
  t.equal(get('overlays/cert-manager', 'MutatingWebhookConfiguration')?.metadata.annotations?.['cert-manager.io/inject-ca-from'], 'asya-system/asya-webhook')
  t.ok(get('overlays/cert-manager', 'Certificate'), 'Certificate')
  const kinds = (rendered.get('overlays/prometheus') ?? render('overlays/prometheus')).map((o) => o.kind)
  for (const k of ['PodMonitor', 'ServiceMonitor', 'PrometheusRule']) t.ok(kinds.includes(k), k)
  t.equal((get('overlays/dev', 'Deployment') as Obj & { spec: { replicas: number } }).spec.replicas, 1)
  t.equal(cm('overlays/dev').ASYA_LOG_LEVEL, 'debug')
  const actor = get('overlays/example-actor', 'Deployment') as Obj & { spec: { template: { metadata: { labels: Record<string, string>; annotations: Record<string, string> } } } }
  t.equal(actor.spec.template.metadata.labels['asya.sh/actor'], 'classify', 'the pod template is labelled by a patch only')
  t.equal(actor.spec.template.metadata.annotations['asya.sh/handler'], 'classifier.Classifier.classify')
})

t.test('alerts and dashboard use only metrics we export', async (t) => {
  const sources = ['sidecar/metrics.ts', 'webhook/server.ts', 'src/controller/metrics.ts', 'gateway/metrics.ts', 'gateway/mcp/metrics.ts'].map((f) => readFileSync(join(root, f), 'utf8')).join('\n')
  const exported = new Set<string>()
  for (const m of sources.matchAll(/name: (?:n\()?'([a-z_]+)'/g)) exported.add(m[1] as string)
  for (const m of sources.matchAll(/'(asya_[a-z_]+)'/g)) exported.add(m[1] as string)
  const known = (name: string): boolean => {
    const base = name.replace(/_(bucket|sum|count)$/, '')
    return exported.has(base) || exported.has(base.replace(/^asya_actor_/, ''))
  }
  const texts = [readFileSync(join(root, 'deploy/grafana/asya-dashboard.json'), 'utf8'), readFileSync(join(root, 'deploy/overlays/prometheus/alerts.yaml'), 'utf8')]
  let checked = 0
  for (const text of texts) {
    for (const m of text.matchAll(/\b(asya_[a-z_]+)\b/g)) {
      const name = m[1] as string
      if (name === 'asya_sh_actor') continue
      t.ok(known(name), `${name} is exported by a component`)
      checked++
    }
  }
  t.ok(checked > 10, `${checked} metric references checked`)
  JSON.parse(texts[0] as string)
})

t.test('Dockerfiles: pinned bases, non-root, entrypoints that the build produces', async (t) => {
  const build = JSON.parse(readFileSync(join(root, 'tsconfig.build.json'), 'utf8')) as { compilerOptions: { outDir: string; rootDir: string }; include: string[] }
  for (const [file, source] of [
    ['sidecar.Dockerfile', 'sidecar/main.ts'],
    ['system.Dockerfile', 'src/system/main.ts'],
    ['gateway.Dockerfile', 'gateway/main.ts'],
  ] as const) {
    const text = readFileSync(join(root, 'deploy/docker', file), 'utf8')
    for (const m of text.matchAll(/^FROM\s+(\S+)/gm)) t.ok(/:[\w.-]+$/.test(m[1] as string) && !(m[1] as string).endsWith(':latest'), `${file}: base ${m[1]} pinned`)
    const users = [...text.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1] as string)
    t.ok(users.length > 0 && !/^(0|root)(:|$)/.test(users[users.length - 1] as string), `${file}: runs as a non-root user`)
    const entry = /^ENTRYPOINT\s+(\[.*\])/m.exec(text)
    const args = JSON.parse(entry?.[1] ?? '[]') as string[]
    const expected = join(build.compilerOptions.outDir, source.replace(/\.ts$/, '.js'))
    t.equal(args[1], expected, `${file}: entrypoint is the compiled ${source}`)
    t.ok(build.include.includes(source.split('/')[0] as string), `${source} is in the build`)
    t.ok(readFileSync(join(root, source), 'utf8').length > 0, `${source} exists`)
  }
})

t.test('dashboard covers what the issue asks for', async (t) => {
  const d = JSON.parse(readFileSync(join(root, 'deploy/grafana/asya-dashboard.json'), 'utf8')) as { panels: Array<{ id: number; title: string; targets?: Array<{ expr: string }> }> }
  const exprs = d.panels.flatMap((p) => (p.targets ?? []).map((x) => x.expr)).join('\n')
  t.equal(new Set(d.panels.map((p) => p.id)).size, d.panels.length, 'panel ids unique')
  t.match(exprs, /rate\(asya_actor_messages_processed_total/, 'throughput')
  t.match(exprs, /asya_actor_retries_total/, 'retry rate')
  t.match(exprs, /status=~"error\|dead_lettered"|asya_actor_messages_failed_total|status="error"/, 'error rate')
  t.match(exprs, /-dlq/, 'DLQ size')
  t.match(exprs, /histogram_quantile\(0\.5, [^\n]*asya_actor_runtime_execution_duration_seconds_bucket/, 'runtime p50')
  t.match(exprs, /histogram_quantile\(0\.99, [^\n]*asya_actor_runtime_execution_duration_seconds_bucket/, 'runtime p99')
  t.match(exprs, /keda_scaler_metrics_value/, 'queue depth')
  t.match(exprs, /replicas/, 'replicas')
  const row = d.panels.find((p) => (p as { type?: string }).type === 'row' && p.title === 'Gateway')
  t.ok(row, 'a Gateway row')
  const below = d.panels.filter((p) => (p as { gridPos?: { y: number } }).gridPos!.y > (row as { gridPos?: { y: number } } | undefined)!.gridPos!.y).flatMap((p) => (p.targets ?? []).map((x) => x.expr)).join('\n')
  for (const m of ['asya_gateway_tool_calls_total', 'asya_gateway_envelopes_final_total', 'asya_gateway_store_duration_seconds_bucket', 'asya_gateway_sse_clients', 'asya_gateway_mcp_requests_total', 'asya_actor_progress_reports_total']) {
    t.match(below, new RegExp(m), `Gateway row shows ${m}`)
  }
})

t.test('every overlay configures a system process that starts: config readers accept it, keys are known', async (t) => {
  const { readWebhookConfig } = await import('../../src/system/config.js')
  const { readControllerSettings, readControllerTransports } = await import('../../src/controller/config.js')
  const documented = readFileSync(join(root, 'docs/configuration.md'), 'utf8')
  for (const target of TARGETS.filter((x) => x !== 'overlays/example-actor')) {
    const objs = rendered.get(target) ?? render(target)
    const data = (objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'asya-config')?.data ?? {}) as Record<string, string>
    const container = containersOf(objs.find((o) => o.kind === 'Deployment' && o.metadata.name === 'asya-system') as Obj)[0] as unknown as { env?: Array<{ name: string; value?: string; valueFrom?: unknown }> }
    const env: Record<string, string> = { ...data }
    // Values the kubelet fills in (downward API, Secrets) get stand-ins of the right shape.
    for (const e of container.env ?? []) env[e.name] = e.value ?? `from-${e.name.toLowerCase()}`
    for (const key of Object.keys(env)) t.ok(documented.includes(`\`${key}\``), `${target}: ${key} is a documented variable (no typo)`)
    t.doesNotThrow(() => {
      const wh = readWebhookConfig(env)
      readControllerSettings(env, wh.systemNamespace)
      readControllerTransports(env)
    }, `${target}: configuration accepted`)
    const wh = readWebhookConfig(env)
    t.not(wh.sidecarImage.endsWith(':latest'), true, `${target}: sidecar image pinned (${wh.sidecarImage})`)
    const webhookPort = (container as unknown as { ports: Array<{ name: string; containerPort: number }> }).ports.find((p) => p.name === 'webhook')?.containerPort
    t.equal(wh.port, webhookPort, `${target}: the webhook listens on the container's webhook port`)
    const metricsPort = (container as unknown as { ports: Array<{ name: string; containerPort: number }> }).ports.find((p) => p.name === 'metrics')?.containerPort
    t.equal(Number((env.ASYA_METRICS_ADDR ?? ':8081').split(':').pop()), metricsPort, `${target}: probes and scrapes hit the metrics listener`)
  }
})

t.test('PrometheusRule carries the alerts the issue asks for, each with a summary', async (t) => {
  const rule = (rendered.get('overlays/prometheus') ?? render('overlays/prometheus')).find((o) => o.kind === 'PrometheusRule') as Obj & { spec: { groups: Array<{ rules: Array<{ alert: string; expr: string; annotations?: { summary?: string } }> }> } }
  const alerts = rule.spec.groups.flatMap((g) => g.rules)
  const names = alerts.map((a) => a.alert)
  for (const n of ['AsyaActorErrorRatioHigh', 'AsyaDeadLettersGrowing', 'AsyaQueueBacklog', 'AsyaActorAtMaxReplicas', 'AsyaWebhookFailures', 'AsyaWebhookCertificateExpiring']) t.ok(names.includes(n), n)
  for (const a of alerts) t.ok(a.annotations?.summary, `${a.alert} has a summary`)
  // Label values in the expressions are ones the components emit.
  const exprs = alerts.map((a) => a.expr).join('\n')
  const code = ['sidecar/message-processor.ts', 'sidecar/settle.ts', 'sidecar/outcomes.ts', 'webhook/server.ts', 'webhook/inject.ts', 'src/controller/metrics.ts'].map((f) => readFileSync(join(root, f), 'utf8')).join('\n')
  for (const m of exprs.matchAll(/\b(status|outcome|result|error_type)=~?"([^"]+)"/g)) {
    for (const v of (m[2] as string).split('|')) t.ok(code.includes(`'${v}'`), `${m[1]}="${v}" is a value the code emits`)
  }
})

t.test('gateway overlay: ≥ 2 hardened replicas behind a Service and a PDB, tools and database wired, sidecars told where it is', async (t) => {
  const objs = rendered.get('overlays/gateway') ?? render('overlays/gateway')
  const find = (kind: string, name: string): Obj => {
    const o = objs.find((x) => x.kind === kind && x.metadata.name.startsWith(name))
    if (!o) throw new Error(`${kind}/${name} not rendered`)
    return o
  }
  type Env = Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean } } }>
  type GwPod = Omit<PodSpec, 'volumes' | 'containers'> & {
    serviceAccountName?: string
    automountServiceAccountToken?: boolean
    containers: Array<Container & { env?: Env; envFrom?: Array<{ configMapRef?: { name: string } }>; ports?: Array<{ name: string; containerPort: number }>; readinessProbe?: { httpGet?: { path: string; port: string } }; livenessProbe?: { httpGet?: { path: string; port: string } }; volumeMounts?: Array<{ name: string; mountPath: string }> }>
    volumes?: Array<{ name: string; configMap?: { name: string } }>
  }
  const dep = find('Deployment', 'asya-gateway') as Obj & { spec: { replicas: number; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: GwPod } } }
  t.ok(dep.spec.replicas >= 2, `${dep.spec.replicas} replicas`)
  const labels = dep.spec.template.metadata.labels
  const selects = (sel: Record<string, string>): boolean => Object.entries(sel).every(([k, v]) => labels[k] === v)
  const pod = dep.spec.template.spec
  const c = pod.containers[0] as GwPod['containers'][number]
  t.equal(pod.automountServiceAccountToken, false, 'no API token: the gateway never calls the Kubernetes API')
  t.equal(find('ServiceAccount', 'asya-gateway').metadata.name, pod.serviceAccountName)

  const pdb = find('PodDisruptionBudget', 'asya-gateway') as Obj & { spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } } }
  t.ok(selects(pdb.spec.selector.matchLabels) && pdb.spec.minAvailable >= 1, 'PDB keeps a replica through node drains')
  const svc = find('Service', 'asya-gateway') as Obj & { spec: { selector: Record<string, string>; ports: Array<{ port: number; targetPort: string }> } }
  t.ok(selects(svc.spec.selector), 'Service selects the gateway pods')
  const httpPort = c.ports?.find((p) => p.name === svc.spec.ports[0]?.targetPort)?.containerPort

  // Environment as the kubelet assembles it: envFrom in order (later wins), then env.
  const env: Record<string, string> = {}
  for (const ref of c.envFrom ?? []) Object.assign(env, (find('ConfigMap', ref.configMapRef?.name ?? '?').data ?? {}) as Record<string, string>)
  for (const e of c.env ?? []) env[e.name] = e.value ?? `from-secret-${e.valueFrom?.secretKeyRef?.name}`
  t.equal(Number(env.ASYA_GATEWAY_PORT), httpPort, 'the gateway listens on the port the Service targets')
  for (const probe of [c.readinessProbe, c.livenessProbe]) t.same(probe?.httpGet, { path: '/health', port: 'http' }, 'probes on GET /health')
  const dbUrl = c.env?.find((e) => e.name === 'ASYA_DATABASE_URL')
  t.ok(dbUrl?.valueFrom?.secretKeyRef && dbUrl.value === undefined, 'database URL from a Secret reference, never inline')
  t.notOk(dbUrl?.valueFrom?.secretKeyRef?.optional, 'and required: no silent fallback to the in-memory store')
  t.ok(c.env?.find((e) => e.name === 'ASYA_MCP_SESSION_SECRET')?.valueFrom?.secretKeyRef, 'MCP session key shared by every replica, from the Secret')

  const tools = pod.volumes?.find((v) => v.configMap?.name.startsWith('asya-gateway-tools'))
  const mount = c.volumeMounts?.find((m) => m.name === tools?.name)
  t.equal(mount?.mountPath, env.ASYA_CONFIG_PATH, 'the tools ConfigMap is mounted where ASYA_CONFIG_PATH points')
  const toolsCm = find('ConfigMap', 'asya-gateway-tools')
  t.ok(((toolsCm.data ?? {}) as Record<string, string>)['routes.yaml'], 'routes.yaml in the tools ConfigMap')
  t.not(toolsCm.metadata.name, 'asya-gateway-tools', 'name carries a content hash: a tool change rolls the pods')
  // The gateway starts with this: its config reader and the strict tool config parser accept it.
  const { readGatewayConfig } = await import('../../gateway/config.js')
  const { parseToolConfig } = await import('../../gateway/tool-config.js')
  const gw = readGatewayConfig({ ...env, ASYA_DATABASE_URL: 'postgres://u:p@db:5432/asya', ASYA_MCP_SESSION_SECRET: 'x'.repeat(32) })
  t.equal(gw.port, httpPort)
  t.equal(gw.transport.name, 'rabbitmq', 'transport shared with the sidecars')
  const toolConfig = parseToolConfig([{ file: 'routes.yaml', text: ((toolsCm.data ?? {}) as Record<string, string>)['routes.yaml'] as string }])
  t.ok(toolConfig.tools.length > 0, 'the shipped routes.yaml parses')
  const documented = readFileSync(join(root, 'docs/configuration.md'), 'utf8')
  for (const key of Object.keys(env)) t.ok(documented.includes(`\`${key}\``), `gateway env ${key} is documented`)

  const pm = find('PodMonitor', 'asya-gateway') as Obj & { spec: { selector: { matchLabels: Record<string, string> }; podMetricsEndpoints: Array<{ port: string; path: string }> } }
  t.ok(selects(pm.spec.selector.matchLabels), 'PodMonitor selects the gateway pods')
  t.ok(c.ports?.some((p) => p.name === pm.spec.podMetricsEndpoints[0]?.port), 'on a port the container has')
  t.equal(pm.spec.podMetricsEndpoints[0]?.path, '/metrics')

  // Every injected sidecar gets ASYA_GATEWAY_URL from the system config: it must reach this Service.
  const { readWebhookConfig } = await import('../../src/system/config.js')
  const system = readWebhookConfig((find('ConfigMap', 'asya-config').data ?? {}) as Record<string, string>)
  // With security on, that is the internal Service (docs/security.md).
  const internalSvc = find('Service', 'asya-gateway-internal') as Obj & { spec: { selector: Record<string, string>; ports: Array<{ port: number; targetPort: string }> } }
  const url = new URL(system.gatewayUrl ?? 'http://unset')
  t.equal(url.hostname, `${internalSvc.metadata.name}.${internalSvc.metadata.namespace}.svc`, 'ASYA_GATEWAY_URL names the gateway\'s internal Service')
  t.equal(Number(url.port), internalSvc.spec.ports[0]?.port, 'and its port')
})

t.test('gateway overlay: security on, internal listener on its own Service, tokens and keys mounted from Secrets, NetworkPolicy lets only actor pods reach the internal port', async (t) => {
  const objs = rendered.get('overlays/gateway') ?? render('overlays/gateway')
  const find = (kind: string, name: string): any => {
    const o = objs.find((x) => x.kind === kind && x.metadata.name === name)
    if (!o) throw new Error(`${kind}/${name} not rendered`)
    return o
  }
  const dep = find('Deployment', 'asya-gateway')
  const pod = dep.spec.template.spec
  const c = pod.containers[0]
  const env: Record<string, string> = {}
  for (const ref of c.envFrom ?? []) Object.assign(env, find('ConfigMap', ref.configMapRef.name).data ?? {})
  for (const e of c.env ?? []) env[e.name] = e.value ?? 'x'.repeat(32)
  const { readGatewayConfig } = await import('../../gateway/config.js')
  const gw = readGatewayConfig({ ...env, ASYA_DATABASE_URL: 'postgres://u:p@db:5432/asya' })
  t.equal(gw.security.enabled, true, 'security on')
  const internalPort = c.ports.find((p: { name: string }) => p.name === 'internal')?.containerPort
  t.equal(gw.security.internalPort, internalPort, 'the gateway listens where the container port is')
  const pub = find('Service', 'asya-gateway')
  t.notOk(pub.spec.ports.some((p: { targetPort: string | number }) => p.targetPort === 'internal' || p.targetPort === internalPort), 'the public Service does not expose the internal port')
  const internal = find('Service', 'asya-gateway-internal')
  t.same(internal.spec.ports.map((p: { targetPort: string }) => p.targetPort), ['internal'])
  t.same(internal.spec.selector, dep.spec.template.metadata.labels)
  // Every security file the config names is mounted from a Secret volume (re-read on rotation).
  for (const file of [gw.security.sidecarTokenFile, gw.security.endActorTokenFile, gw.security.apiKeysFile]) {
    const dir = (file ?? '').replace(/\/[^/]+$/, '')
    const m = c.volumeMounts.find((v: { mountPath: string }) => v.mountPath === dir)
    const vol = pod.volumes.find((v: { name: string }) => v.name === m?.name)
    t.ok(vol?.secret?.secretName, `${file} comes from Secret ${vol?.secret?.secretName}`)
    t.ok(m?.readOnly, 'read-only')
  }
  t.equal(pod.volumes.find((v: { name: string; secret?: { secretName: string } }) => v.secret?.secretName === 'asya-gateway-internal') !== undefined, true)
  // NetworkPolicy.
  const np = find('NetworkPolicy', 'asya-gateway')
  t.same(np.spec.podSelector.matchLabels, dep.spec.template.metadata.labels, 'selects the gateway pods')
  t.same(np.spec.policyTypes, ['Ingress'])
  const rules = np.spec.ingress as Array<{ from?: Array<{ namespaceSelector?: object; podSelector?: { matchExpressions?: Array<{ key: string; operator: string }> } }>; ports: Array<{ port: string }> }>
  const toInternal = rules.filter((r) => r.ports.some((p) => p.port === 'internal'))
  t.equal(toInternal.length, 1, 'one rule for the internal port')
  t.same(toInternal[0]?.from, [{ namespaceSelector: {}, podSelector: { matchExpressions: [{ key: 'asya.sh/actor', operator: 'Exists' }] } }], 'only pods labelled asya.sh/actor, in any namespace')
  t.ok(rules.every((r) => r.ports.every((p) => p.port === 'http' || r.from !== undefined)), 'nothing else is open to everyone but the public port')
  t.ok(rules.some((r) => r.from === undefined && r.ports.some((p) => p.port === 'http')), 'the public port stays reachable')
  // The end actors carry the end-actor token; an injected actor gets the sidecars' token only.
  const { readSidecarConfig } = await import('../../sidecar/config.js')
  for (const name of ['asya-happy-end', 'asya-error-end']) {
    const e = find('Deployment', name).spec.template.spec.containers[0].env.find((x: { name: string }) => x.name === 'ASYA_GATEWAY_TOKEN')
    t.same(e?.valueFrom?.secretKeyRef, { name: 'asya-gateway-internal', key: 'end-actor-token' }, `${name}: the end-actor token by reference`)
    t.ok(find('Deployment', name).spec.template.metadata.labels['asya.sh/actor'], `${name}: labelled asya.sh/actor, so the NetworkPolicy lets it in`)
  }
  const { readWebhookConfig } = await import('../../src/system/config.js')
  const { injectPod } = await import('../../webhook/inject.js')
  const system = readWebhookConfig(find('ConfigMap', 'asya-config').data)
  const actor = (rendered.get('overlays/example-actor') ?? render('overlays/example-actor')).find((o) => o.kind === 'Deployment') as any
  const result = injectPod({ apiVersion: 'v1', kind: 'Pod', metadata: structuredClone(actor.spec.template.metadata), spec: structuredClone(actor.spec.template.spec) }, { config: system, namespace: 'ml' })
  if (result.kind !== 'injected') throw new Error('example actor not injected')
  const sidecar = [...((result.pod.spec as any).initContainers ?? []), ...(result.pod.spec as any).containers].find((x: { name: string }) => x.name === 'asya-sidecar')
  const tokenEnv = sidecar.env.find((x: { name: string }) => x.name === 'ASYA_GATEWAY_TOKEN')
  t.same(tokenEnv?.valueFrom?.secretKeyRef, { name: 'asya-gateway-sidecar', key: 'token', optional: true }, 'an injected actor gets the sidecars\' token from its own namespace')
  const sidecarEnv: Record<string, string> = {}
  for (const e of sidecar.env) sidecarEnv[e.name] = e.value ?? 'y'.repeat(40)
  const cfg = readSidecarConfig(sidecarEnv)
  t.equal(cfg.gatewayUrl, 'http://asya-gateway-internal.asya-system.svc:8081', 'and reports to the internal Service')
  t.equal(cfg.gatewayToken, 'y'.repeat(40))
})

t.test('end actors ship in base: happy-end and error-end, sidecar image only, 2 replicas, PDB, never scaled to zero, a config the sidecar accepts on every overlay', async (t) => {
  const { readSidecarConfig } = await import('../../sidecar/config.js')
  type EndPod = PodSpec & { serviceAccountName?: string; automountServiceAccountToken?: boolean; containers: Array<Container & { env?: Array<{ name: string; value?: string; valueFrom?: unknown }>; envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string; optional?: boolean } }> }> }
  type EndDeployment = Obj & { spec: { replicas: number; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: EndPod } } }
  for (const target of TARGETS.filter((x) => x !== 'overlays/example-actor')) {
    const objs = rendered.get(target) ?? render(target)
    for (const actor of ['happy-end', 'error-end']) {
      const name = `asya-${actor}`
      const dep = objs.find((o) => o.kind === 'Deployment' && o.metadata.name === name) as EndDeployment | undefined
      if (!t.ok(dep, `${target}: Deployment ${name}`) || !dep) continue
      t.equal(dep.spec.template.metadata.labels['asya.sh/actor'], actor, `${target}: ${name} labelled asya.sh/actor=${actor}`)
      t.ok(Number(dep.metadata.annotations?.['asya.sh/min-replicas']) >= 1, `${target}: ${name} min-replicas ≥ 1 (results never wait for a cold start)`)
      t.ok(dep.spec.replicas >= 2, `${target}: ${name} 2 replicas`)
      const pod = dep.spec.template.spec
      t.same(pod.containers.map((c) => c.name), ['asya-sidecar'], `${target}: ${name} runs the sidecar image alone`)
      t.equal(pod.automountServiceAccountToken, false, `${target}: ${name} has no API token`)
      t.equal(dep.metadata.namespace, 'asya-system', 'in the system namespace, which the webhook never mutates')
      const pdb = objs.find((o) => o.kind === 'PodDisruptionBudget' && o.metadata.name === name) as (Obj & { spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } } }) | undefined
      t.ok(pdb && pdb.spec.minAvailable >= 1 && Object.entries(pdb.spec.selector.matchLabels).every(([k, v]) => dep.spec.template.metadata.labels[k] === v), `${target}: ${name} PDB selects its pods`)
      t.ok(objs.some((o) => o.kind === 'ServiceAccount' && o.metadata.name === pod.serviceAccountName), `${target}: ServiceAccount ${pod.serviceAccountName}`)
      // The environment as the kubelet assembles it, Secrets as stand-ins: the sidecar accepts it.
      const c = pod.containers[0] as EndPod['containers'][number]
      const env: Record<string, string> = {}
      for (const ref of c.envFrom ?? []) {
        if (ref.configMapRef) {
          const cm = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === ref.configMapRef?.name)
          t.ok(cm, `${target}: ConfigMap ${ref.configMapRef.name} ships`)
          Object.assign(env, (cm?.data ?? {}) as Record<string, string>)
        }
        if (ref.secretRef) t.equal(ref.secretRef.optional, true, `${target}: Secret ${ref.secretRef.name} optional (pod identity needs none)`)
      }
      for (const e of c.env ?? []) env[e.name] = e.value ?? `from-${e.name.toLowerCase()}`
      if (env.ASYA_RABBITMQ_PASSWORD !== undefined) t.ok(c.env?.find((e) => e.name === 'ASYA_RABBITMQ_PASSWORD')?.valueFrom, `${target}: broker password by Secret reference`)
      let cfg: ReturnType<typeof readSidecarConfig> | undefined
      t.doesNotThrow(() => {
        cfg = readSidecarConfig(env)
      }, `${target}: ${name} configuration accepted by the sidecar`)
      t.equal(cfg?.actorName, actor)
      t.equal(cfg?.isEndActor, true)
      t.equal(cfg?.runtimeEnabled, false, 'no runtime')
      t.equal(cfg?.metricsPort, 8080, 'probes on the metrics port')
      if (target === 'overlays/gateway') t.equal(cfg?.gatewayUrl, 'http://asya-gateway-internal.asya-system.svc:8081', 'gateway overlay: final reports to the gateway\'s internal Service')
      if (target === 'overlays/sqs') t.ok(objs.find((o) => o.kind === 'ServiceAccount' && o.metadata.name === pod.serviceAccountName)?.metadata.annotations?.['eks.amazonaws.com/role-arn'], 'sqs overlay: end actors get an IAM role (pod identity)')
    }
  }
})

t.test('claim-check overlay: the example actor admitted with the rendered system config parks and restores with the end actors’ server and bucket', async (t) => {
  const { readWebhookConfig } = await import('../../src/system/config.js')
  const { readSidecarConfig } = await import('../../sidecar/config.js')
  const { injectPod } = await import('../../webhook/inject.js')
  const objs = rendered.get('overlays/claim-check') ?? render('overlays/claim-check')
  const data = (name: string): Record<string, string> => (objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === name)?.data ?? {}) as Record<string, string>
  const system = data('asya-config')
  const actor = (rendered.get('overlays/example-actor') ?? render('overlays/example-actor')).find((o) => o.kind === 'Deployment') as Obj
  const template = (actor.spec as { template: { metadata: Record<string, unknown>; spec: PodSpec } }).template
  const result = injectPod({ apiVersion: 'v1', kind: 'Pod', metadata: structuredClone(template.metadata), spec: structuredClone(template.spec) }, { config: readWebhookConfig(system), namespace: 'ml' })
  if (result.kind !== 'injected') throw new Error(`example actor not injected: ${JSON.stringify(result)}`)
  t.same(result.warnings, [], 'without a warning')
  type Env = Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }>
  const spec = result.pod.spec as { initContainers?: Array<{ name: string; env?: Env }>; containers: Array<{ name: string; env?: Env }> }
  const sidecar = [...(spec.initContainers ?? []), ...spec.containers].find((c) => c.name === 'asya-sidecar')
  // The Secret the overlay names, with the keys the end actors' asya-s3 Secret has.
  const secret: Record<string, string> = { ASYA_S3_ACCESS_KEY: 'minio-user', ASYA_S3_SECRET_KEY: 'minio-secret' }
  const env: Record<string, string> = {}
  for (const e of sidecar?.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef
    if (ref) {
      t.equal(ref.name, system.ASYA_CLAIM_CHECK_CREDENTIALS_SECRET, `${e.name} from the Secret the system names`)
      t.ok(ref.key in secret, `${e.name}: key ${ref.key} is in the asya-s3 layout`)
    }
    env[e.name] = ref ? (secret[ref.key] ?? '') : (e.value ?? '')
  }
  const cfg = readSidecarConfig(env)
  t.equal(cfg.claimCheck?.bucket, 'asya-claims', 'the actor parks in the claim bucket')
  t.equal(cfg.s3.endpoint, 'http://minio.minio.svc:9000')
  t.same(cfg.s3.credentials, { accessKeyId: 'minio-user', secretAccessKey: 'minio-secret' })
  // The end actors as the kubelet assembles their env (envFrom in order, then env).
  const dep = objs.find((o) => o.kind === 'Deployment' && o.metadata.name === 'asya-happy-end') as Obj
  const c = containersOf(dep)[0] as unknown as { envFrom: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>; env: Env }
  const endEnv: Record<string, string> = {}
  for (const ref of c.envFrom) {
    if (ref.configMapRef) Object.assign(endEnv, data(ref.configMapRef.name))
    if (ref.secretRef) {
      t.equal(ref.secretRef.name, system.ASYA_CLAIM_CHECK_CREDENTIALS_SECRET, 'the end actors read the same Secret')
      Object.assign(endEnv, secret)
    }
  }
  for (const e of c.env) endEnv[e.name] = e.value ?? `from-${e.name.toLowerCase()}`
  const end = readSidecarConfig(endEnv)
  t.equal(end.claimCheck?.bucket, cfg.claimCheck?.bucket, 'the end actor restores and deletes claims of the same bucket')
  t.equal(end.claimCheck?.prefix, cfg.claimCheck?.prefix, 'under the same prefix')
  t.equal(end.s3.endpoint, cfg.s3.endpoint, 'on the same S3 server')
  t.equal(end.s3.bucket, 'asya-results', 'and persists results to the results bucket')
})
