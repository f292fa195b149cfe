import { errors } from '../errors.js'

/**
 * Reads and validates environment variables. Every problem is collected and reported at once
 * by {@link EnvReader.finish}, naming each variable: a bad value is a startup error, never a
 * silent default.
 */
export class EnvReader {
  private readonly problems: string[] = []

  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}

  /** Raw value, or undefined when unset or empty. */
  raw(name: string): string | undefined {
    const v = this.env[name]
    return v === undefined || v.trim() === '' ? undefined : v.trim()
  }

  string(name: string, fallback: string): string
  string(name: string, fallback?: undefined): string | undefined
  string(name: string, fallback?: string): string | undefined {
    return this.raw(name) ?? fallback
  }

  required(name: string): string {
    const v = this.raw(name)
    if (v === undefined) {
      this.problems.push(`${name} is required but not set`)
      return ''
    }
    return v
  }

  int(name: string, fallback: number, range: { min?: number; max?: number } = {}): number {
    const v = this.raw(name)
    if (v === undefined) return fallback
    if (!/^-?\d+$/.test(v)) return this.bad(name, v, 'an integer', fallback)
    const n = Number(v)
    if ((range.min !== undefined && n < range.min) || (range.max !== undefined && n > range.max)) {
      return this.bad(name, v, `an integer in [${range.min ?? '-inf'}, ${range.max ?? 'inf'}]`, fallback)
    }
    return n
  }

  bool(name: string, fallback: boolean): boolean {
    const v = this.raw(name)
    if (v === undefined) return fallback
    const lower = v.toLowerCase()
    if (['true', '1', 'yes', 'on'].includes(lower)) return true
    if (['false', '0', 'no', 'off'].includes(lower)) return false
    return this.bad(name, v, 'true or false', fallback)
  }

  /** Duration in milliseconds; see {@link parseDuration} for the accepted forms. */
  duration(name: string, fallbackMs: number, range: { minMs?: number; maxMs?: number } = {}): number {
    const v = this.raw(name)
    if (v === undefined) return fallbackMs
    const ms = parseDuration(v)
    if (ms === undefined) return this.bad(name, v, 'a duration such as 300ms, 5s, 5m, 1h30m or seconds as a number', fallbackMs)
    if ((range.minMs !== undefined && ms < range.minMs) || (range.maxMs !== undefined && ms > range.maxMs)) {
      return this.bad(name, v, `a duration between ${range.minMs ?? 0}ms and ${range.maxMs ?? 'inf'}ms`, fallbackMs)
    }
    return ms
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const v = this.raw(name)
    if (v === undefined) return fallback
    if (!(allowed as readonly string[]).includes(v)) return this.bad(name, v, `one of ${allowed.join(', ')}`, fallback)
    return v as T
  }

  /** `host:port`, `:port` or `[v6]:port` listen address (an empty host is every interface). */
  listenAddr(name: string, fallback: string): { host: string; port: number } {
    const text = this.string(name, fallback)
    const addr = parseListenAddr(text)
    if (addr) return addr
    this.fail(name, `"${text}" is not host:port or :port`)
    return parseListenAddr(fallback) ?? { host: '0.0.0.0', port: 0 }
  }

  /** Records a custom validation failure. */
  fail(name: string, message: string): void {
    this.problems.push(`${name}: ${message}`)
  }

  /** Throws ASYA_ERR_CONFIG_INVALID naming every bad variable, if any. */
  finish(): void {
    if (this.problems.length > 0) {
      throw new errors.ASYA_ERR_CONFIG_INVALID(this.problems.join('; '), {
        details: { problems: [...this.problems] },
      })
    }
  }

  private bad<T>(name: string, value: string, expected: string, fallback: T): T {
    this.problems.push(`${name}=${JSON.stringify(value)} is invalid: expected ${expected}`)
    return fallback
  }
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/**
 * Parses Go-style durations (`300ms`, `5s`, `5m`, `1h30m`, `1.5s`) as upstream Asya does, and a
 * bare number as seconds (the unit of the `asya.sh/timeout` annotation). Returns undefined when
 * the text is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  const s = text.trim()
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000)
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(s)) return undefined
  let total = 0
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number)
  }
  return Math.round(total)
}

/** Parses `host:port`, `:port` (every interface) or `[v6]:port`; undefined when it is none of them. */
export function parseListenAddr(addr: string): { host: string; port: number } | undefined {
  const m = /^(.*):(\d{1,5})$/.exec(addr.trim())
  if (!m) return undefined
  const port = Number(m[2])
  if (port > 65535) return undefined
  const host = (m[1] ?? '').replace(/^\[(.*)\]$/, '$1')
  return { host: host === '' ? '0.0.0.0' : host, port }
}
