/**
 * MCP session ids that every replica accepts without shared state: `initialize` answers with an
 * `Mcp-Session-Id` that is a signed token (`<payload>.<HMAC-SHA256>`, base64url), and any replica
 * holding the same key verifies it on later requests. The payload carries the negotiated protocol
 * version, so a replica that never saw the `initialize` still knows it.
 *
 * Session ids are not credentials (MCP sessions are not authentication); the signature only keeps
 * a replica from accepting ids it never issued, which MCP answers with 404 so the client
 * re-initializes. They do not expire; rotating the key ends every session.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

export interface SessionClaims {
  /** Protocol version negotiated at initialize. */
  protocolVersion: string
  /** Issued at (Unix seconds). */
  issuedAt: number
}

export class SessionSigner {
  private readonly key: Buffer

  constructor(key: string | Buffer) {
    this.key = typeof key === 'string' ? Buffer.from(key, 'utf8') : key
  }

  issue(protocolVersion: string, now = Date.now()): string {
    const payload = Buffer.from(JSON.stringify({ v: protocolVersion, t: Math.floor(now / 1000), n: randomBytes(9).toString('base64url') }), 'utf8').toString('base64url')
    return `${payload}.${this.sign(payload)}`
  }

  /** The claims of a session id this key issued, or undefined for anything else. */
  verify(id: string): SessionClaims | undefined {
    const dot = id.indexOf('.')
    if (dot <= 0 || id.length > 512) return undefined
    const payload = id.slice(0, dot)
    const given = Buffer.from(id.slice(dot + 1), 'base64url')
    const expected = Buffer.from(this.sign(payload), 'base64url')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined
    try {
      const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { v?: unknown; t?: unknown }
      if (typeof claims.v !== 'string' || typeof claims.t !== 'number') return undefined
      return { protocolVersion: claims.v, issuedAt: claims.t }
    } catch {
      return undefined
    }
  }

  private sign(payload: string): string {
    return createHmac('sha256', this.key).update(payload).digest('base64url')
  }
}

/**
 * The signing key: ASYA_MCP_SESSION_SECRET when set; else derived from the database URL (every
 * replica of one deployment shares it); else random for this process (in-memory store: one
 * replica anyway).
 */
export function sessionKey(o: { secret?: string; databaseUrl?: string }): { key: Buffer; source: 'secret' | 'database_url' | 'random' } {
  if (o.secret !== undefined) return { key: Buffer.from(o.secret, 'utf8'), source: 'secret' }
  if (o.databaseUrl !== undefined) return { key: createHmac('sha256', 'asya-mcp-session').update(o.databaseUrl).digest(), source: 'database_url' }
  return { key: randomBytes(32), source: 'random' }
}
