/**
 * The `asya` command line (SPEC §14): one program, kubectl habits. Every command lives in
 * commands/<name>.ts and registers itself on the commander program built here; runCli maps
 * outcomes to exit codes (0 ok, 1 failed, 2 usage) and prints errors without stack traces.
 */
import { Command, CommanderError } from 'commander'
import { errorMessage } from '../errors.js'
import { registerActors } from './commands/actors.js'
import { registerDev } from './commands/dev.js'
import { registerDlq } from './commands/dlq.js'
import { registerInject } from './commands/inject.js'
import { registerMcp } from './commands/mcp.js'
import { registerQueues } from './commands/queues.js'
import { withExamples } from './help.js'
import { CliError, EXIT, type CliIo } from './io.js'

export type { CliIo } from './io.js'

const VERSION = '0.1.0'

/** Builds the whole program; output goes to `io`, never to the process streams. */
export function buildProgram(io: CliIo): Command {
  const program = new Command('asya')
  program
    .description('Asya: call pipelines as tools, see actors and queues, replay dead letters, run pipelines locally.')
    .version(VERSION, '--version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr, outputError: (s, write) => write(s) })
    // A fixed width: the same help on every terminal, and in docs/cli.md.
    .configureHelp({ helpWidth: 100 })
    .showHelpAfterError('(add --help for usage)')
    .showSuggestionAfterError(true)
    // `asya actors describe X -n ns`: options after a subcommand belong to it, not its parent.
    .enablePositionalOptions()
  // Settings above are copied to every subcommand created below.
  registerMcp(program, io)
  registerActors(program, io)
  registerQueues(program, io)
  registerDlq(program, io)
  registerInject(program, io)
  registerDev(program, io)
  withExamples(program, [
    ['asya mcp call echo --message=hello', 'call a tool through the gateway, with a progress bar'],
    ['asya actors -A', 'every actor in the cluster with its queue and DLQ depth'],
    ['asya dlq replay classify --dry-run', 'see which dead letters a replay would move'],
    ["asya dev pipeline.py --route normalize,classify --payload '{\"text\": \"hi\"}'", 'a pipeline on this machine'],
  ])
  program.addHelpText('after', `Exit codes: 0 ok, 1 the operation failed, 2 usage or configuration error.\nRun 'asya <command> --help' for a command's options and examples.\n`)
  return program
}

/** Runs one command line; resolves to the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const program = buildProgram(io)
  try {
    await program.parseAsync([...argv], { from: 'user' })
    return EXIT.ok
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version are successes; `asya` alone shows help on stderr as a usage error.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT.ok
      return EXIT.usage
    }
    if (err instanceof CliError) {
      io.stderr(`error: ${err.message}\n`)
      return err.exitCode
    }
    io.stderr(`error: ${errorMessage(err)}\n`)
    return EXIT.failed
  }
}
