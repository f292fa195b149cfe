/**
 * What every `asya` command gets from its caller: output streams, stdin, env. Tests and the
 * docs generator pass their own; bin.mjs passes the process's.
 */
export interface CliIo {
  stdout: (s: string) => void
  stderr: (s: string) => void
  /** Read only when a command asks (`-f -`), so nothing blocks on a terminal. */
  readStdin: () => string
  env: NodeJS.ProcessEnv
  /**
   * The terminal behind stderr, when there is one: progress bars draw on it; without it, commands
   * print plain lines. @default undefined (plain lines)
   */
  stderrTty?: NodeJS.WriteStream
  /** Asks a yes/no question on the terminal; absent when stdin is not a terminal. */
  confirm?: (question: string) => Promise<boolean>
  /** Resolves on Ctrl-C (SIGINT), for commands that run until interrupted. */
  interrupted?: Promise<void>
}

/** Exit codes (kubectl's): 0 ok, 1 the operation failed, 2 usage or configuration. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const

/**
 * A failure the user can act on: the message says what went wrong and how to fix it. Thrown by
 * commands, printed as `error: <message>` by runCli, never with a stack trace.
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failed,
  ) {
    super(message)
    this.name = 'CliError'
  }
}

export const usageError = (message: string): CliError => new CliError(message, EXIT.usage)
