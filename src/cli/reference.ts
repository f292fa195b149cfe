/**
 * docs/cli.md, generated from the commands' own --help (scripts/gen-cli-docs.mjs writes it;
 * test/cli/docs.test.ts fails when it is out of date).
 */
import type { Command } from 'commander'
import { buildProgram, runCli } from './asya.js'
import type { CliIo } from './io.js'

/** Every command below `cmd` as its path of names (`['actors', 'describe']`); `help` and hidden ones left out. */
export function commandPaths(cmd: Command, prefix: string[] = []): string[][] {
  const out: string[][] = []
  for (const sub of cmd.createHelp().visibleCommands(cmd)) {
    if (sub.name() === 'help') continue
    const p = [...prefix, sub.name()]
    out.push(p, ...commandPaths(sub, p))
  }
  return out
}

async function helpOf(path: string[]): Promise<string> {
  let text = ''
  const io: CliIo = { stdout: (s) => (text += s), stderr: (s) => (text += s), readStdin: () => '', env: {} }
  await runCli([...path, '--help'], io)
  return text.trimEnd()
}

export async function cliReference(): Promise<string> {
  const quiet: CliIo = { stdout: () => undefined, stderr: () => undefined, readStdin: () => '', env: {} }
  const program = buildProgram(quiet)
  const parts = [
    '# `asya` command reference',
    '',
    '<!-- Generated from the commands\' --help by `npm run docs:cli`; test/cli/docs.test.ts keeps it in sync. Do not edit by hand. -->',
    '',
    'Design notes (kubectl habits, exit codes, where configuration comes from) are in [cli-design.md](cli-design.md).',
    '',
    '## asya',
    '',
    '```',
    await helpOf([]),
    '```',
  ]
  for (const p of commandPaths(program)) {
    parts.push('', `${'#'.repeat(Math.min(p.length + 1, 4))} asya ${p.join(' ')}`, '', '```', await helpOf(p), '```')
  }
  return parts.join('\n') + '\n'
}
