/**
 * Serving certificate with hot reload (SPEC §9): the cert/key files are watched (fs.watch on
 * their directories — Kubernetes swaps a Secret volume's `..data` symlink, which only a
 * directory watch sees — plus a poll as a fallback for filesystems without inotify). A new pair
 * is validated before use; an invalid or half-written pair keeps the old certificate serving.
 */
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto'
import { watch, type FSWatcher } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { createSecureContext, type SecureContextOptions } from 'node:tls'
import { errorMessage, errors } from '../src/errors.js'
import type { Logger } from '../src/logger.js'
import { SingleFlight } from '../src/single-flight.js'

export const TLS_MIN_VERSION = 'TLSv1.2' as const

export interface LoadedCert {
  cert: Buffer
  key: Buffer
  /** SHA-256 fingerprint of the leaf certificate (colon-separated hex, as X509Certificate prints it). */
  fingerprint256: string
  validTo: Date
}

/** Reads and validates a pair; throws ASYA_ERR_TLS naming the file and the reason. */
export async function loadCertPair(certFile: string, keyFile: string): Promise<LoadedCert> {
  let cert: Buffer
  let key: Buffer
  try {
    ;[cert, key] = await Promise.all([readFile(certFile), readFile(keyFile)])
  } catch (err) {
    throw new errors.ASYA_ERR_TLS(`cannot read TLS files ${certFile} / ${keyFile}: ${errorMessage(err)}`, { cause: err })
  }
  return validatePair(cert, key, certFile)
}

export function validatePair(cert: Buffer, key: Buffer, label = 'certificate'): LoadedCert {
  try {
    const x509 = new X509Certificate(cert)
    if (!x509.checkPrivateKey(createPrivateKey(key))) throw new Error('the key does not belong to the certificate')
    createSecureContext({ cert, key, minVersion: TLS_MIN_VERSION })
    return { cert, key, fingerprint256: x509.fingerprint256, validTo: new Date(x509.validTo) }
  } catch (err) {
    throw new errors.ASYA_ERR_TLS(`invalid TLS pair (${label}): ${errorMessage(err)}`, { cause: err })
  }
}

export function secureContextOptions(c: LoadedCert): SecureContextOptions {
  return { cert: c.cert, key: c.key, minVersion: TLS_MIN_VERSION }
}

export interface CertWatcherOptions {
  certFile: string
  keyFile: string
  pollMs: number
  logger: Logger
  /** Called with every new valid pair (the first one included). */
  onCert: (c: LoadedCert) => void
  /** Called after each check that found changed files: `loaded` or `invalid`. */
  onCheck?: (result: 'loaded' | 'invalid') => void
}

export class CertWatcher {
  private current: LoadedCert | undefined
  /** Hash of the last file contents looked at, valid or not: an unchanged bad pair is reported once. */
  private lastSeen = ''
  private watchers: FSWatcher[] = []
  private timer: NodeJS.Timeout | undefined
  private debounce: NodeJS.Timeout | undefined
  private readonly checking = new SingleFlight(() => this.doCheck())
  private closed = false

  constructor(private readonly o: CertWatcherOptions) {}

  get cert(): LoadedCert | undefined {
    return this.current
  }

  /** Loads once, then watches. A missing/invalid pair at start is logged; the server is then not ready. */
  async start(): Promise<void> {
    await this.check()
    for (const dir of new Set([dirname(this.o.certFile), dirname(this.o.keyFile)])) {
      try {
        const w = watch(dir, () => this.schedule())
        w.on('error', () => undefined)
        this.watchers.push(w)
      } catch (err) {
        this.o.logger.warn({ dir, err: errorMessage(err) }, 'cannot watch the TLS directory; relying on polling')
      }
    }
    this.timer = setInterval(() => void this.check(), this.o.pollMs)
    this.timer.unref()
  }

  private schedule(): void {
    if (this.closed) return
    clearTimeout(this.debounce)
    // A rotation writes two files (or swaps a symlink): wait for the burst to settle.
    this.debounce = setTimeout(() => void this.check(), 50)
    this.debounce.unref()
  }

  /** Re-reads the files now (also used by tests and by the self-managed CA). */
  check(): Promise<void> {
    return this.checking.run()
  }

  private async doCheck(): Promise<void> {
    let cert: Buffer
    let key: Buffer
    try {
      ;[cert, key] = await Promise.all([readFile(this.o.certFile), readFile(this.o.keyFile)])
    } catch (err) {
      const seen = `missing:${errorMessage(err)}`
      if (seen !== this.lastSeen) {
        this.lastSeen = seen
        this.o.logger.error({ code: 'ASYA_ERR_TLS', err: errorMessage(err) }, this.current ? 'TLS files unreadable; still serving the previous certificate' : 'TLS files unreadable; not ready')
        this.o.onCheck?.('invalid')
      }
      return
    }
    const seen = createHash('sha256').update(cert).update('\0').update(key).digest('hex')
    if (seen === this.lastSeen) return
    this.lastSeen = seen
    try {
      const loaded = validatePair(cert, key, this.o.certFile)
      this.current = loaded
      this.o.onCert(loaded)
      this.o.logger.info({ fingerprint256: loaded.fingerprint256, validTo: loaded.validTo.toISOString() }, 'TLS certificate loaded')
      this.o.onCheck?.('loaded')
    } catch (err) {
      this.o.logger.error({ code: 'ASYA_ERR_TLS', err: errorMessage(err) }, this.current ? 'new TLS pair rejected; still serving the previous certificate' : 'TLS pair invalid; not ready')
      this.o.onCheck?.('invalid')
    }
  }

  close(): void {
    this.closed = true
    clearInterval(this.timer)
    clearTimeout(this.debounce)
    for (const w of this.watchers) w.close()
    this.watchers = []
  }
}
