import { request, Agent } from 'node:https'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, type PeerCertificate } from 'node:tls'
import { Registry } from 'prom-client'
import { createLogger } from '../../src/logger.js'
import type { WebhookConfig } from '../../src/system/config.js'
import { generateCerts, type GeneratedCerts } from '../../webhook/certs.js'
import { createWebhookServer, type WebhookServer } from '../../webhook/server.js'
import { testConfig } from './fixtures.js'

export const SERVICE = 'asya-webhook'
export const NAMESPACE = 'asya-system'
/** The name the API server dials and checks (Service DNS name). */
export const SERVERNAME = `${SERVICE}.${NAMESPACE}.svc`
export const silent = createLogger('test', { level: 'silent' })

export function tmp(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

export async function certs(dir = tmp('asya-wh-certs-'), ca?: { cert: string; key: string }): Promise<GeneratedCerts> {
  return generateCerts({ dir, service: SERVICE, namespace: NAMESPACE, ...(ca ? { ca } : {}) })
}

export function webhookConfig(c: { cert: string; key: string }, over: Partial<WebhookConfig> = {}): WebhookConfig {
  return {
    ...testConfig,
    enabled: true,
    systemNamespace: NAMESPACE,
    host: '127.0.0.1',
    port: 0,
    tlsCertFile: c.cert,
    tlsKeyFile: c.key,
    tlsReloadIntervalMs: 100,
    bodyLimit: 1024 * 1024,
    certMode: 'files',
    service: SERVICE,
    webhookConfigurationName: 'asya-webhook',
    caSecretName: 'asya-webhook-ca',
    caResyncMs: 30_000,
    ...over,
  }
}

export async function startServer(cfg: WebhookConfig, registry = new Registry()): Promise<{ server: WebhookServer; url: string; registry: Registry }> {
  const server = await createWebhookServer(cfg, { logger: silent, registry })
  const url = await server.listen()
  return { server, url, registry }
}

export interface Reply {
  status: number
  body: string
  json(): unknown
}

/** HTTPS POST verifying the chain and the Service name, like the API server. */
export function post(url: string, body: string | Buffer, o: { ca: string; contentType?: string; agent?: Agent; path?: string }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}${o.path ?? '/mutate'}`,
      {
        method: 'POST',
        ca: o.ca,
        servername: SERVERNAME,
        ...(o.agent ? { agent: o.agent } : {}),
        headers: { 'content-type': o.contentType ?? 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (d: Buffer) => chunks.push(d))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          resolve({ status: res.statusCode ?? 0, body: text, json: () => JSON.parse(text) as unknown })
        })
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

export function get(url: string, path: string, ca: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    request(`${url}${path}`, { ca, servername: SERVERNAME }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (d: Buffer) => chunks.push(d))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        resolve({ status: res.statusCode ?? 0, body: text, json: () => JSON.parse(text) as unknown })
      })
    })
      .on('error', reject)
      .end()
  })
}

/** The certificate the server presents right now (no verification: we only look). */
export function servedCert(url: string): Promise<PeerCertificate> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const s = connect({ host: u.hostname, port: Number(u.port), servername: SERVERNAME, rejectUnauthorized: false }, () => {
      const c = s.getPeerCertificate()
      s.end()
      resolve(c)
    })
    s.on('error', reject)
  })
}

export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs
  for (;;) {
    try {
      if (await check()) return
    } catch {
      // not yet
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

let uidCounter = 0
export function admissionReview(object: unknown, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `uid-${++uidCounter}-${Math.random().toString(36).slice(2)}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      namespace: 'team-a',
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
      object,
      dryRun: false,
      ...over,
    },
  }
}

export function actorPod(actor = 'echo', annotations: Record<string, string> = { 'asya.sh/handler': 'echo.handle' }): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: `${actor}-abc-`, labels: { app: actor, 'asya.sh/actor': actor }, annotations },
    spec: { containers: [{ name: 'handler', image: 'python:3.12-slim' }] },
  }
}

export function plainPod(): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'web-', labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx' }] } }
}
