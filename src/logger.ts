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
