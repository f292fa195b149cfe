/**
 * A mounted Secret file that is re-read when it changes, so a key or token is added or revoked
 * without a restart (Kubernetes swaps the `..data` symlink of a Secret volume atomically; the
 * kubelet takes up to a minute to do so). The file is checked at most once per `reloadIntervalMs`;
 * a new version that does not parse is refused and the previous one kept (logged), so a typo in
 * a rotation never locks every caller out.
 */
import { readFileSync, statSync } from 'node:fs'
import { errorMessage } from '../../src/errors.js'
import type { Logger } from '../../src/logger.js'

export class ReloadingFile<T> {
  private value: T
  private version: string
  private checkedAt = 0

  /** Reads and parses the file now; throws (naming the file) when either fails. */
  constructor(
    readonly path: string,
    private readonly parse: (text: string) => T,
    private readonly reloadIntervalMs: number,
    private readonly logger: Logger,
    private readonly onReload?: (value: T) => void,
  ) {
    this.version = ReloadingFile.versionOf(path)
    try {
      this.value = parse(readFileSync(path, 'utf8'))
    } catch (err) {
      throw new Error(`${path}: ${errorMessage(err)}`)
    }
    this.checkedAt = Date.now()
  }

  private static versionOf(path: string): string {
    const s = statSync(path)
    return `${s.ino}:${s.size}:${s.mtimeMs}`
  }

  /** The current contents, re-read first when the interval passed and the file changed. */
  current(): T {
    const now = Date.now()
    if (now - this.checkedAt >= this.reloadIntervalMs) {
      this.checkedAt = now
      this.reload()
    }
    return this.value
  }

  private reload(): void {
    let version: string
    try {
      version = ReloadingFile.versionOf(this.path)
    } catch (err) {
      this.logger.error({ file: this.path, err: errorMessage(err) }, 'secret file unreadable; keeping the previous version')
      return
    }
    if (version === this.version) return
    try {
      const value = this.parse(readFileSync(this.path, 'utf8'))
      this.value = value
      this.version = version
      this.logger.info({ file: this.path }, 'secret file reloaded')
      this.onReload?.(value)
    } catch (err) {
      // Remember the bad version so it is not re-parsed (and re-logged) on every request.
      this.version = version
      this.logger.error({ file: this.path, err: errorMessage(err) }, 'secret file changed but is invalid; keeping the previous version')
    }
  }
}
