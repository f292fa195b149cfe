/**
 * Builds the security parts from the config: the mounted token and key files (read now, so a
 * missing or malformed one fails the start naming the file, all problems at once), the JWT
 * verifier, and the protected-resource metadata document.
 */
import type { FastifyInstance } from 'fastify'
import { errors } from '../../src/errors.js'
import type { Logger } from '../../src/logger.js'
import type { GatewayConfig } from '../config.js'
import { CallerAuthenticator, PROTECTED_RESOURCE_PATH, publicBase } from './auth.js'
import { ApiKeySet, TokenSet } from './credentials.js'
import { JwtVerifier } from './oidc.js'
import { ReloadingFile } from './secret-file.js'

export interface SecurityParts {
  callers: CallerAuthenticator
  sidecarTokens: ReloadingFile<TokenSet>
  endActorTokens: ReloadingFile<TokenSet>
}

/** Undefined with security off. Throws ASYA_ERR_CONFIG_INVALID naming every unreadable file. */
export function buildSecurity(config: GatewayConfig, logger: Logger): SecurityParts | undefined {
  const s = config.security
  if (!s.enabled) return undefined
  const problems: string[] = []
  const load = <T>(variable: string, path: string | undefined, parse: (text: string) => T): ReloadingFile<T> | undefined => {
    if (path === undefined) return undefined
    try {
      return new ReloadingFile(path, parse, s.reloadIntervalMs, logger)
    } catch (err) {
      problems.push(`${variable}: ${(err as Error).message}`)
      return undefined
    }
  }
  const sidecarTokens = load('ASYA_GATEWAY_SIDECAR_TOKEN_FILE', s.sidecarTokenFile, TokenSet.parse)
  const endActorTokens = load('ASYA_GATEWAY_END_ACTOR_TOKEN_FILE', s.endActorTokenFile, TokenSet.parse)
  const apiKeys = load('ASYA_GATEWAY_API_KEYS_FILE', s.apiKeysFile, ApiKeySet.parse)
  if (problems.length > 0 || !sidecarTokens || !endActorTokens) {
    throw new errors.ASYA_ERR_CONFIG_INVALID(problems.join('; '), { details: { problems } })
  }
  const jwt = s.oidc ? new JwtVerifier(s.oidc) : undefined
  logger.info({ api_keys: apiKeys?.current().size ?? 0, oidc_issuer: s.oidc?.issuer, internal_port: s.internalPort }, 'gateway security on')
  return { callers: new CallerAuthenticator(apiKeys, jwt), sidecarTokens, endActorTokens }
}

/** RFC 9728 metadata for the MCP endpoint, at both well-known paths clients probe. */
export function registerProtectedResourceMetadata(app: FastifyInstance, config: GatewayConfig): void {
  const oidc = config.security.oidc
  const handler = async (req: Parameters<typeof publicBase>[0]): Promise<Record<string, unknown>> => ({
    resource: `${publicBase(req, config.publicUrl)}/mcp`,
    ...(oidc ? { authorization_servers: [oidc.issuer] } : {}),
    bearer_methods_supported: ['header'],
    ...(oidc && oidc.scopes.length > 0 ? { scopes_supported: oidc.scopes } : {}),
    resource_name: 'Asya gateway',
  })
  app.get(PROTECTED_RESOURCE_PATH, handler)
  app.get(`${PROTECTED_RESOURCE_PATH}/mcp`, handler)
}
