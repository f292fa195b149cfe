/**
 * Authentication hooks (security on). Public listener: every route but health, metrics and the
 * protected-resource metadata needs `Authorization: Bearer <API key or JWT>`; the MCP challenge
 * follows the MCP authorization spec (RFC 9728 `resource_metadata`). Internal listener: the
 * sidecars' shared token, and for `final` the end actors' own token (docs/security.md).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { ApiKeySet, TokenSet } from './credentials.js'
import { looksLikeJwt, type JwtVerifier } from './oidc.js'
import type { ReloadingFile } from './secret-file.js'
import { sendRejection, type RejectDeps, type Rejection } from './rejections.js'

export interface Caller {
  /** `key:<name>`, `jwt:<sub>`, `sidecar`, `end-actor`, or `ip:<address>` with security off. */
  name: string
  kind: 'api_key' | 'jwt' | 'sidecar' | 'end_actor' | 'anonymous'
  /** Tools this caller may call; undefined = all. */
  tools?: ReadonlySet<string>
}

declare module 'fastify' {
  interface FastifyRequest {
    caller?: Caller
  }
}

export const PROTECTED_RESOURCE_PATH = '/.well-known/oauth-protected-resource'
/** Routes that answer without a credential (probes, scraping, discovery). */
export const PUBLIC_OPEN_ROUTES: ReadonlySet<string> = new Set(['/health', '/metrics', PROTECTED_RESOURCE_PATH, `${PROTECTED_RESOURCE_PATH}/mcp`])

export function bearerToken(header: string | string[] | undefined): string | undefined {
  const h = Array.isArray(header) ? header[0] : header
  if (h === undefined) return undefined
  const m = /^Bearer +([\x21-\x7e]+) *$/i.exec(h)
  return m ? m[1] : undefined
}

export type AuthResult = { ok: true; caller: Caller } | { ok: false; status: 401 | 503; message: string; tokenPresent: boolean }

export class CallerAuthenticator {
  constructor(
    private readonly apiKeys: ReloadingFile<ApiKeySet> | undefined,
    private readonly jwt: JwtVerifier | undefined,
  ) {}

  async authenticate(header: string | string[] | undefined): Promise<AuthResult> {
    const token = bearerToken(header)
    if (token === undefined) return { ok: false, status: 401, message: header === undefined ? 'no bearer token (Authorization: Bearer <API key or JWT>)' : 'malformed Authorization header (expected: Bearer <token>)', tokenPresent: header !== undefined }
    if (this.jwt && looksLikeJwt(token)) {
      const r = await this.jwt.verify(token)
      if (r.ok) return { ok: true, caller: { name: `jwt:${r.subject}`, kind: 'jwt' } }
      return { ok: false, status: r.kind === 'unavailable' ? 503 : 401, message: r.kind === 'unavailable' ? r.message : `invalid JWT: ${r.message}`, tokenPresent: true }
    }
    const key = this.apiKeys?.current().find(token)
    if (key) return { ok: true, caller: { name: `key:${key.name}`, kind: 'api_key', ...(key.tools ? { tools: key.tools } : {}) } }
    return { ok: false, status: 401, message: this.apiKeys ? 'unknown or revoked API key' : 'not a valid JWT', tokenPresent: true }
  }
}

/** Absolute base URL of this gateway as its callers see it. */
export function publicBase(req: FastifyRequest, publicUrl: string): string {
  if (publicUrl !== '') return publicUrl
  const host = typeof req.headers.host === 'string' && /^[A-Za-z0-9.:[\]-]+$/.test(req.headers.host) ? req.headers.host : 'localhost'
  return `${req.protocol}://${host}`
}

export interface CallerAuthOptions {
  deps: RejectDeps
  publicUrl: string
  /** Preflight requests carry no credential: let them through to the CORS handler. */
  corsEnabled: boolean
}

export function installCallerAuth(app: FastifyInstance, auth: CallerAuthenticator, o: CallerAuthOptions): void {
  app.addHook('onRequest', async (req, reply) => {
    const route = req.routeOptions.url
    if (route !== undefined && PUBLIC_OPEN_ROUTES.has(route)) return
    if (o.corsEnabled && req.method === 'OPTIONS') return
    const r = await auth.authenticate(req.headers.authorization)
    if (r.ok) {
      req.caller = r.caller
      return
    }
    const metadata = `${publicBase(req, o.publicUrl)}${PROTECTED_RESOURCE_PATH}`
    const challenge = r.tokenPresent
      ? `Bearer resource_metadata="${metadata}", error="invalid_token", error_description="${r.message.replace(/["\\]/g, "'")}"`
      : `Bearer resource_metadata="${metadata}"`
    const rejection: Rejection =
      r.status === 503
        ? { status: 503, code: 'ASYA_ERR_AUTH_UNAVAILABLE', reason: 'auth_unavailable', message: r.message, headers: { 'retry-after': '5' } }
        : { status: 401, code: 'ASYA_ERR_UNAUTHORIZED', reason: 'unauthorized', message: r.message, headers: { 'www-authenticate': challenge } }
    return sendRejection(reply, o.deps, rejection)
  })
}

export interface InternalAuthOptions {
  deps: RejectDeps
  sidecarTokens: ReloadingFile<TokenSet>
  endActorTokens: ReloadingFile<TokenSet>
  /** Routes only the end actors may call. */
  endActorRoutes: ReadonlySet<string>
}

export function installInternalAuth(app: FastifyInstance, o: InternalAuthOptions): void {
  app.addHook('onRequest', async (req, reply) => {
    const route = req.routeOptions.url
    if (route === '/health') return
    const token = bearerToken(req.headers.authorization)
    const isEnd = token !== undefined && o.endActorTokens.current().matches(token)
    const isSidecar = !isEnd && token !== undefined && o.sidecarTokens.current().matches(token)
    if (!isEnd && !isSidecar) {
      return sendRejection(reply, o.deps, {
        status: 401,
        code: 'ASYA_ERR_UNAUTHORIZED',
        reason: 'unauthorized',
        message: token === undefined ? 'no bearer token (sidecars send ASYA_GATEWAY_TOKEN)' : 'unknown sidecar token',
        headers: { 'www-authenticate': 'Bearer realm="asya-gateway-internal"' },
      })
    }
    req.caller = isEnd ? { name: 'end-actor', kind: 'end_actor' } : { name: 'sidecar', kind: 'sidecar' }
    if (route !== undefined && o.endActorRoutes.has(route) && !isEnd) {
      return sendRejection(reply, o.deps, { status: 403, code: 'ASYA_ERR_FORBIDDEN', reason: 'forbidden_final', message: 'only end actors may report a final status' })
    }
  })
}
