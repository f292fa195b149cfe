/**
 * OIDC/JWT callers through `jose`: signature against the issuer's JWKS (fetched once, cached for
 * ASYA_GATEWAY_OIDC_JWKS_MAX_AGE, re-fetched when a token names an unknown `kid`, at most once per
 * ASYA_GATEWAY_OIDC_JWKS_COOLDOWN: that is how a key rotation at the issuer is picked up), `iss`,
 * `aud` (RFC 8707 / MCP: a token minted for another resource is refused), `exp` and `nbf`.
 * Without ASYA_GATEWAY_OIDC_JWKS_URL the JWKS address comes from the issuer's
 * `/.well-known/openid-configuration`, read on first use and retried after a failure.
 */
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose'
import { errorMessage } from '../../src/errors.js'
import type { OidcConfig } from '../config.js'

export type JwtResult = { ok: true; subject: string; claims: JWTPayload } | { ok: false; kind: 'invalid' | 'unavailable'; message: string }

/** Three base64url segments: worth trying as a JWT (an API key never has dots). */
export function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)
}

export class JwtVerifier {
  private jwks: ReturnType<typeof createRemoteJWKSet> | undefined
  private discovering: Promise<ReturnType<typeof createRemoteJWKSet>> | undefined

  constructor(private readonly o: OidcConfig) {
    if (o.jwksUrl !== undefined) this.jwks = this.remote(o.jwksUrl)
  }

  private remote(url: string): ReturnType<typeof createRemoteJWKSet> {
    return createRemoteJWKSet(new URL(url), { cooldownDuration: this.o.jwksCooldownMs, cacheMaxAge: this.o.jwksMaxAgeMs, timeoutDuration: 5000 })
  }

  private async keys(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    if (this.jwks) return this.jwks
    this.discovering ??= (async () => {
      const url = `${this.o.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`
      const res = await fetch(url, { signal: AbortSignal.timeout(5000) })
      if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`)
      const doc = (await res.json()) as { jwks_uri?: unknown }
      if (typeof doc.jwks_uri !== 'string') throw new Error(`${url}: no jwks_uri`)
      this.jwks = this.remote(doc.jwks_uri)
      return this.jwks
    })().catch((err: unknown) => {
      this.discovering = undefined
      throw err
    })
    return this.discovering
  }

  async verify(token: string): Promise<JwtResult> {
    // Malformed tokens are refused before any key is fetched (and before they can reach a code
    // path whose failure would look like an outage).
    try {
      decodeProtectedHeader(token)
      decodeJwt(token)
    } catch (err) {
      return { ok: false, kind: 'invalid', message: `malformed JWT: ${errorMessage(err)}` }
    }
    let jwks: ReturnType<typeof createRemoteJWKSet>
    try {
      jwks = await this.keys()
    } catch (err) {
      return { ok: false, kind: 'unavailable', message: `OIDC discovery failed: ${errorMessage(err)}` }
    }
    try {
      const { payload } = await jwtVerify(token, jwks, {
        issuer: this.o.issuer,
        audience: this.o.audience,
        algorithms: this.o.algorithms,
        clockTolerance: Math.round(this.o.clockToleranceMs / 1000),
        requiredClaims: ['exp'],
      })
      const subject = typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : typeof payload.client_id === 'string' ? payload.client_id : 'unknown'
      return { ok: true, subject, claims: payload }
    } catch (err) {
      // The issuer's JWKS down or broken is our outage, not a bad token.
      const jwksHttp = err instanceof joseErrors.JOSEError && /JSON Web Key Set HTTP response/.test(err.message)
      if (err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid || jwksHttp || !(err instanceof joseErrors.JOSEError)) {
        return { ok: false, kind: 'unavailable', message: `JWKS unavailable: ${errorMessage(err)}` }
      }
      if (err instanceof joseErrors.JWTExpired) return { ok: false, kind: 'invalid', message: 'token expired' }
      if (err instanceof joseErrors.JWTClaimValidationFailed) return { ok: false, kind: 'invalid', message: `claim ${err.claim} invalid: ${err.reason}` }
      return { ok: false, kind: 'invalid', message: errorMessage(err) }
    }
  }
}
