import type { Command } from 'commander'

/** Appends an `Examples:` section to a command's --help (and so to docs/cli.md). */
export function withExamples(cmd: Command, examples: ReadonlyArray<readonly [command: string, what: string]>): Command {
  const width = Math.max(...examples.map(([c]) => c.length))
  const text = examples.map(([c, what]) => `  ${c.padEnd(width)}   # ${what}`).join('\n')
  return cmd.addHelpText('after', `\nExamples:\n${text}\n`)
}
