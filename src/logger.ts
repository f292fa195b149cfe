import { pino, type Logger, type LevelWithSilent } from 'pino'

export type { Logger }

const LEVELS: readonly string[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/** True when `level` is a pino level name (used by config readers to validate ASYA_LOG_LEVEL). */
export function isLogLevel(level: string): level is LevelWithSilent {
  return LEVELS.includes(level)
}

/**
 * JSON-lines logger (pino). `component` and any `bindings` (actor, ...) appear on every line.
 * Logs go to stdout unless `destination` is given (tests pass a stream).
 */
export function createLogger(
  component: string,
  options: { level?: string; bindings?: Record<string, unknown>; destination?: NodeJS.WritableStream } = {},
): Logger {
  const level = options.level !== undefined && isLogLevel(options.level) ? options.level : 'info'
  const base = { component, ...(options.bindings ?? {}) }
  const opts = { level, base, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label: string) => ({ level: label }) } }
  return options.destination ? pino(opts, options.destination as pino.DestinationStream) : pino(opts)
}

const LINE_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const
const PARENT = Symbol('lazyChild.parent')
const MAKE = Symbol('lazyChild.bindings')
const CHILD = Symbol('lazyChild.child')

interface LazyState {
  [PARENT]: Logger
  [MAKE]: () => Record<string, unknown>
  [CHILD]: Logger | undefined
}

function realChild(l: LazyState): Logger {
  return (l[CHILD] ??= l[PARENT].child(l[MAKE]()))
}

/** One prototype per parent logger: the parent underneath, the line methods on top. */
const prototypes = new WeakMap<Logger, object>()

function lazyPrototype(parent: Logger): object {
  let proto = prototypes.get(parent)
  if (proto !== undefined) return proto
  proto = Object.create(parent) as object
  for (const level of LINE_LEVELS) {
    Object.defineProperty(proto, level, {
      configurable: true,
      writable: true,
      value: function (this: LazyState, ...args: unknown[]): void {
        if (this[CHILD] === undefined && !this[PARENT].isLevelEnabled(level)) return
        ;(realChild(this)[level] as (...a: unknown[]) => void)(...args)
      },
    })
  }
  Object.defineProperty(proto, 'child', {
    configurable: true,
    writable: true,
    value: function (this: LazyState, ...args: Parameters<Logger['child']>) {
      return realChild(this).child(...args)
    },
  })
  Object.defineProperty(proto, 'bindings', {
    configurable: true,
    writable: true,
    value: function (this: LazyState) {
      return realChild(this).bindings()
    },
  })
  prototypes.set(parent, proto)
  return proto
}

/**
 * `parent.child(bindings())`, created only when a line is logged through it (or `child()` /
 * `bindings()` is called): the sidecar makes one per envelope, and most envelopes never log, while
 * a pino child costs a serialisation of its bindings and a new logger object up front. A line for a
 * level the parent does not log creates nothing. Everything else (level, isLevelEnabled, ...) is
 * the parent's, which is what the child would report too.
 */
export function lazyChild(parent: Logger, bindings: () => Record<string, unknown>): Logger {
  const lazy = Object.create(lazyPrototype(parent)) as LazyState
  lazy[PARENT] = parent
  lazy[MAKE] = bindings
  lazy[CHILD] = undefined
  return lazy as unknown as Logger
}
