/**
 * Gateway security (docs/security.md#sidecar-tokens): with ASYA_GATEWAY_TOKEN_SECRET the webhook
 * gives every injected sidecar ASYA_GATEWAY_TOKEN by secretKeyRef (never inline, optional so a pod
 * in a namespace without the Secret still starts), and the sidecar's config reader takes it.
 * Without it, nothing changes (the goldens).
 */
import t from 'tap'
import { readSidecarConfig } from '../../sidecar/config.js'
import { injectPod } from '../../webhook/inject.js'
import { readWebhookConfig } from '../../src/system/config.js'
import { testConfig } from './fixtures.js'
import type { InjectionConfig } from '../../src/system/config.js'

interface EnvVar {
  name: string
  value?: string
  valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean } }
}

function sidecarEnv(actor: string, config: InjectionConfig): EnvVar[] {
  const r = injectPod(
    { metadata: { labels: { 'asya.sh/actor': actor }, annotations: { 'asya.sh/handler': 'm.f' } }, spec: { containers: [{ name: 'asya-runtime', image: 'py' }] } },
    { config, namespace: 'team-a' },
  )
  if (r.kind !== 'injected') throw new Error(`not injected: ${JSON.stringify(r)}`)
  const spec = r.pod.spec as { initContainers?: Array<{ name: string; env?: EnvVar[] }>; containers: Array<{ name: string; env?: EnvVar[] }> }
  const c = [...(spec.initContainers ?? []), ...spec.containers].find((x) => x.name === 'asya-sidecar')
  return c?.env ?? []
}

t.test('token Secret configured: every sidecar (end-actor names too) gets the sidecar token by reference', async (t) => {
  const config: InjectionConfig = { ...testConfig, gatewayTokenSecret: 'asya-gateway-sidecar' }
  for (const actor of ['cleaner', 'happy-end']) {
    const env = sidecarEnv(actor, config)
    const token = env.filter((e) => e.name === 'ASYA_GATEWAY_TOKEN')
    t.same(token, [{ name: 'ASYA_GATEWAY_TOKEN', valueFrom: { secretKeyRef: { name: 'asya-gateway-sidecar', key: 'token', optional: true } } }], `${actor}: secretKeyRef, optional, the sidecars' Secret only`)
    t.notOk(env.some((e) => e.value !== undefined && /token/i.test(e.name)), 'never inline')
    const vars: NodeJS.ProcessEnv = {}
    for (const e of env) vars[e.name] = e.value ?? 'x'.repeat(40)
    t.equal(readSidecarConfig(vars).gatewayToken, 'x'.repeat(40), 'the sidecar reads ASYA_GATEWAY_TOKEN')
  }
})

t.test('no token Secret, or no gateway: no ASYA_GATEWAY_TOKEN', async (t) => {
  t.notOk(sidecarEnv('cleaner', testConfig).some((e) => e.name === 'ASYA_GATEWAY_TOKEN'))
  const { gatewayUrl: _omit, ...noGateway } = { ...testConfig, gatewayTokenSecret: 'asya-gateway-sidecar' }
  t.notOk(sidecarEnv('cleaner', noGateway).some((e) => e.name === 'ASYA_GATEWAY_TOKEN' || e.name === 'ASYA_GATEWAY_URL'))
})

t.test('system config: ASYA_GATEWAY_TOKEN_SECRET is read and validated', async (t) => {
  const base = { ASYA_SIDECAR_IMAGE: 'img', ASYA_GATEWAY_URL: 'http://gw:8081' }
  t.equal(readWebhookConfig({ ...base, ASYA_GATEWAY_TOKEN_SECRET: 'asya-gateway-sidecar' }).gatewayTokenSecret, 'asya-gateway-sidecar')
  t.throws(() => readWebhookConfig({ ...base, ASYA_GATEWAY_TOKEN_SECRET: 'Not_A_Name' }), /ASYA_GATEWAY_TOKEN_SECRET/)
})
