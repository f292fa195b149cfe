/**
 * Static credentials: the sidecars' and end actors' shared tokens, and callers' API keys. Only
 * SHA-256 digests are kept in memory (API keys are stored hashed in their file too), compared in
 * constant time. Formats are documented in docs/security.md.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { parse as parseYaml } from 'yaml'

/** The shortest token or key we accept: 128 bits as hex. */
export const MIN_SECRET_LENGTH = 32

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest()
}

/** Whether `digest` equals one of `digests`, in time independent of where they differ. */
function includesDigest(digests: readonly Buffer[], digest: Buffer): boolean {
  let found = false
  for (const d of digests) found = timingSafeEqual(d, digest) || found
  return found
}

/**
 * A token file: one token per line (several while a rotation is under way), blank lines and
 * `#` comments ignored.
 */
export class TokenSet {
  private constructor(private readonly digests: Buffer[]) {}

  static parse(text: string): TokenSet {
    const tokens = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
    if (tokens.length === 0) throw new Error('no token in the file')
    const short = tokens.filter((t) => t.length < MIN_SECRET_LENGTH).length
    if (short > 0) throw new Error(`${short} token(s) shorter than ${MIN_SECRET_LENGTH} characters (use: openssl rand -hex 32)`)
    return new TokenSet(tokens.map(sha256))
  }

  get size(): number {
    return this.digests.length
  }

  matches(token: string): boolean {
    return includesDigest(this.digests, sha256(token))
  }
}

/** One caller's API key as the keys file declares it. */
export interface ApiKey {
  /** Shown in logs and metrics as the caller; never the key. */
  name: string
  /** Allowed tools; undefined = every tool. */
  tools?: ReadonlySet<string>
}

const KEY_FIELDS = new Set(['name', 'sha256', 'tools'])

/**
 * The API keys file (YAML): `keys: [{name, sha256, tools?}]`, `sha256` the hex digest of the key
 * (`printf %s "$KEY" | sha256sum`). Strict: an unknown field, a duplicate name or digest, or a
 * malformed digest fails the whole file, naming the entry.
 */
export class ApiKeySet {
  private constructor(private readonly byDigest: Map<string, ApiKey>) {}

  static parse(text: string): ApiKeySet {
    const doc = parseYaml(text) as unknown
    const problems: string[] = []
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc) || !Array.isArray((doc as Record<string, unknown>).keys)) {
      throw new Error('must be a YAML mapping with a `keys` list')
    }
    for (const k of Object.keys(doc as object)) if (k !== 'keys') problems.push(`${k}: unknown key`)
    const byDigest = new Map<string, ApiKey>()
    const names = new Set<string>()
    ;((doc as { keys: unknown[] }).keys).forEach((entry, i) => {
      const at = `keys[${i}]`
      if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) return void problems.push(`${at}: must be a mapping`)
      const e = entry as Record<string, unknown>
      for (const k of Object.keys(e)) if (!KEY_FIELDS.has(k)) problems.push(`${at}.${k}: unknown key`)
      if (typeof e.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$/.test(e.name)) return void problems.push(`${at}.name: must be 1-63 characters [A-Za-z0-9._@-]`)
      if (names.has(e.name)) problems.push(`${at}.name: duplicate ${e.name}`)
      names.add(e.name)
      if (typeof e.sha256 !== 'string' || !/^[0-9a-fA-F]{64}$/.test(e.sha256)) return void problems.push(`${at}(${e.name}).sha256: must be 64 hex digits (the key's SHA-256)`)
      const digest = e.sha256.toLowerCase()
      if (byDigest.has(digest)) problems.push(`${at}(${e.name}).sha256: the same key as ${byDigest.get(digest)?.name}`)
      let tools: Set<string> | undefined
      if (e.tools !== undefined) {
        if (!Array.isArray(e.tools) || !e.tools.every((t) => typeof t === 'string')) problems.push(`${at}(${e.name}).tools: must be a list of tool names`)
        else tools = new Set(e.tools as string[])
      }
      byDigest.set(digest, { name: e.name, ...(tools ? { tools } : {}) })
    })
    if (problems.length > 0) throw new Error(problems.join('; '))
    return new ApiKeySet(byDigest)
  }

  get size(): number {
    return this.byDigest.size
  }

  /**
   * The key's entry. A map lookup by digest: its timing reveals at most which digest prefix
   * exists, and a digest of a random key is useless without the key.
   */
  find(key: string): ApiKey | undefined {
    return this.byDigest.get(sha256(key).toString('hex'))
  }
}
