/**
 * deploy/: every kustomization renders with the real `kubectl kustomize`; built-in objects pass
 * their Kubernetes schemas (kubernetes-models); and the rules we promise hold (pinned images,
 * hardened containers, least-privilege RBAC, a webhook that cannot lock up the cluster).
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parseAllDocuments } from 'yaml'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; annotations?: Record<string, string> }; [k: string]: unknown }
type Container = { name: string; image?: string; resources?: { requests?: object; limits?: object }; securityContext?: Record<string, unknown> }

const TARGETS = ['base', 'overlays/rabbitmq', 'overlays/sqs', 'overlays/cert-manager', 'overlays/prometheus', 'overlays/dev', 'overlays/example-actor']

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

t.test('rules: containers hardened and sized, images pinned in base', async (t) => {
  for (const target of TARGETS.filter((x) => x !== 'overlays/example-actor')) {
    for (const o of rendered.get(target) ?? render(target)) {
      for (const c of containersOf(o)) {
        const where = `${target} ${o.kind}/${o.metadata.name} container ${c.name}`
        t.ok(c.image && !c.image.endsWith(':latest') && c.image.includes(':'), `${where}: pinned image (${c.image})`)
        t.ok(c.resources?.requests && c.resources.limits, `${where}: requests and limits`)
        const sc = c.securityContext ?? {}
        t.equal(sc.allowPrivilegeEscalation, false, `${where}: no privilege escalation`)
        t.equal(sc.readOnlyRootFilesystem, true, `${where}: read-only root filesystem`)
        t.equal(sc.runAsNonRoot, true, `${where}: non-root`)
        t.same((sc.capabilities as { drop?: string[] } | undefined)?.drop, ['ALL'], `${where}: all capabilities dropped`)
      }
    }
  }
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
  const get = (target: string, kind: string): Obj | undefined => (rendered.get(target) ?? render(target)).find((o) => o.kind === kind)
  const cm = (target: string): Record<string, string> => (get(target, 'ConfigMap')?.data ?? {}) as Record<string, string>
  t.equal(cm('overlays/sqs').ASYA_TRANSPORT, 'sqs')
  t.ok(get('overlays/sqs', 'ServiceAccount')?.metadata.annotations?.['eks.amazonaws.com/role-arn'], 'IRSA role on the ServiceAccount')
  t.equal(cm('overlays/rabbitmq').ASYA_RABBITMQ_CREDENTIALS_SECRET, 'asya-rabbitmq')
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
  const sources = ['sidecar/metrics.ts', 'webhook/server.ts', 'src/controller/metrics.ts'].map((f) => readFileSync(join(root, f), 'utf8')).join('\n')
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
})

t.test('every overlay configures a system process that starts: config readers accept it, keys are known', async (t) => {
  const { readWebhookConfig } = await import('../../src/system/config.js')
  const { readControllerSettings, readControllerTransports } = await import('../../src/controller/config.js')
  const documented = readFileSync(join(root, 'docs/configuration.md'), 'utf8')
  for (const target of TARGETS.filter((x) => x !== 'overlays/example-actor')) {
    const objs = rendered.get(target) ?? render(target)
    const data = (objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'asya-config')?.data ?? {}) as Record<string, string>
    const container = containersOf(objs.find((o) => o.kind === 'Deployment') as Obj)[0] as unknown as { env?: Array<{ name: string; value?: string; valueFrom?: unknown }> }
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
  const code = ['sidecar/message-processor.ts', 'webhook/server.ts', 'webhook/inject.ts', 'src/controller/metrics.ts'].map((f) => readFileSync(join(root, f), 'utf8')).join('\n')
  for (const m of exprs.matchAll(/\b(status|outcome|result|error_type)=~?"([^"]+)"/g)) {
    for (const v of (m[2] as string).split('|')) t.ok(code.includes(`'${v}'`), `${m[1]}="${v}" is a value the code emits`)
  }
})
