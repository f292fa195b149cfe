/**
 * Gateway security test support: token and key files in a temp dir, a real JWKS/OIDC issuer
 * (node:http serving keys made with jose, which can rotate them), and a gateway started with
 * ASYA_GATEWAY_SECURITY=on.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose'
import { startGateway, type Teardown, type TestGateway, type TestGatewayOptions } from './support.js'

export const token = (): string => randomBytes(24).toString('hex')
export const sha256hex = (s: string): string => createHash('sha256').update(s).digest('hex')

type Key = Awaited<ReturnType<typeof generateKeyPair>>['privateKey']

/** An OIDC issuer: discovery document + JWKS; `rotate()` replaces the published key. */
export class TestIssuer {
  url = ''
  private server: Server | undefined
  private keys: Array<{ kid: string; jwk: Record<string, unknown> }> = []
  private current: { kid: string; key: Key } | undefined
  jwksFetches = 0

  async start(t: Teardown): Promise<this> {
    await this.rotate()
    this.server = createServer((req, res) => {
      if (req.url === '/.well-known/openid-configuration') {
        res.setHeader('content-type', 'application/json')
        return res.end(JSON.stringify({ issuer: this.url, jwks_uri: `${this.url}/jwks` }))
      }
      if (req.url === '/jwks') {
        this.jwksFetches++
        res.setHeader('content-type', 'application/json')
        return res.end(JSON.stringify({ keys: this.keys.map((k) => ({ ...k.jwk, kid: k.kid, alg: 'RS256', use: 'sig' })) }))
      }
      res.statusCode = 404
      res.end()
    })
    await new Promise<void>((r) => this.server?.listen(0, '127.0.0.1', r))
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
    t.teardown(() => new Promise<void>((r) => this.server?.close(() => r())))
    return this
  }

  /** A new signing key; the JWKS publishes only it from now on. Returns the old key for forged tokens. */
  async rotate(): Promise<{ kid: string; key: Key } | undefined> {
    const old = this.current
    const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true })
    const kid = randomBytes(6).toString('hex')
    this.keys = [{ kid, jwk: (await exportJWK(publicKey)) as Record<string, unknown> }]
    this.current = { kid, key: privateKey }
    return old
  }

  async sign(claims: JWTPayload & { aud?: string }, o: { expiresIn?: string | number; key?: { kid: string; key: Key } } = {}): Promise<string> {
    const k = o.key ?? this.current
    if (!k) throw new Error('no key')
    const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: k.kid }).setIssuer(this.url).setIssuedAt()
    jwt.setExpirationTime(o.expiresIn ?? '5m')
    return jwt.sign(k.key)
  }
}

export interface SecureGateway extends TestGateway {
  internalUrl: string
  dir: string
  sidecarToken: string
  endActorToken: string
  /** API key of caller `ci` (all tools) and `echo-only` (allow-list [echo]). */
  keys: { ci: string; echoOnly: string }
  writeKeys(entries: Array<{ name: string; key: string; tools?: string[] }>): void
}

export async function startSecureGateway(t: Teardown, o: TestGatewayOptions & { issuer?: TestIssuer } = {}): Promise<SecureGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'asya-gw-sec-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const sidecarToken = token()
  const endActorToken = token()
  writeFileSync(join(dir, 'sidecar-token'), `${sidecarToken}\n`)
  writeFileSync(join(dir, 'end-actor-token'), `# rotation: one token per line\n${endActorToken}\n`)
  const keys = { ci: token(), echoOnly: token() }
  const writeKeys = (entries: Array<{ name: string; key: string; tools?: string[] }>): void => {
    const yaml = ['keys:', ...entries.map((e) => `  - { name: ${e.name}, sha256: ${sha256hex(e.key)}${e.tools ? `, tools: [${e.tools.join(', ')}]` : ''} }`)].join('\n')
    writeFileSync(join(dir, 'api-keys.yaml'), `${yaml}\n`)
  }
  writeKeys([
    { name: 'ci', key: keys.ci },
    { name: 'echo-only', key: keys.echoOnly, tools: ['echo'] },
  ])
  const gw = await startGateway(t, {
    ...o,
    env: {
      ASYA_GATEWAY_SECURITY: 'on',
      ASYA_GATEWAY_INTERNAL_PORT: '0',
      ASYA_GATEWAY_SIDECAR_TOKEN_FILE: join(dir, 'sidecar-token'),
      ASYA_GATEWAY_END_ACTOR_TOKEN_FILE: join(dir, 'end-actor-token'),
      ASYA_GATEWAY_API_KEYS_FILE: join(dir, 'api-keys.yaml'),
      ASYA_GATEWAY_SECRETS_RELOAD_INTERVAL: '0',
      ...(o.issuer ? { ASYA_GATEWAY_OIDC_ISSUER: o.issuer.url, ASYA_GATEWAY_OIDC_AUDIENCE: 'https://gateway.test/mcp', ASYA_GATEWAY_OIDC_JWKS_COOLDOWN: '0', ASYA_GATEWAY_OIDC_CLOCK_TOLERANCE: '0' } : {}),
      ...(o.env ?? {}),
    },
  })
  // The tools' first queue exists (nothing consumes it): envelopes stay running.
  await gw.transport.ensureQueue('gw-a')
  const internal = gw.gateway.internalAddr
  if (!internal) throw new Error('no internal listener')
  return { ...gw, internalUrl: `http://127.0.0.1:${internal.port}`, dir, sidecarToken, endActorToken, keys, writeKeys }
}

export { request, type Reply } from './support.js'
