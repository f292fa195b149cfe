/** The habits every `asya` command shares: --help with examples, exit codes 0 / 1 / 2. */
import t from 'tap'
import { buildProgram } from '../../src/cli/asya.js'
import type { CliIo } from '../../src/cli/io.js'
import { commandPaths } from '../../src/cli/reference.js'
import { asya } from './helpers.js'

const quiet: CliIo = { stdout: () => undefined, stderr: () => undefined, readStdin: () => '', env: {} }
const paths = [[], ...commandPaths(buildProgram(quiet))]

t.test('every command: --help exits 0 and shows its usage and examples of itself', async (t) => {
  t.ok(paths.length >= 13, `${paths.length} commands`)
  for (const p of paths) {
    const name = ['asya', ...p].join(' ')
    const r = await asya([...p, '--help'], {})
    t.equal(r.code, 0, `${name} --help exits 0`)
    t.match(r.stdout, new RegExp(`^Usage: ${name}\\b`, 'm'), `${name}: usage`)
    const examples = r.stdout.split('\nExamples:\n')[1] ?? ''
    const lines = examples.split('\n').filter((l) => /^\s+\S/.test(l))
    t.ok(lines.length > 0, `${name}: an Examples section`)
    // An example of a subcommand shows that subcommand (the root and `mcp` may show their children).
    t.ok(lines.some((l) => l.includes(p.length === 0 ? 'asya ' : p[p.length - 1] as string)), `${name}: examples use it`)
  }
})

t.test('exit codes: 2 for usage, 0 for --version, help on stderr when no command is given', async (t) => {
  const unknown = await asya(['actros'], {})
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, /unknown command 'actros'[\s\S]*Did you mean actors\?/, 'a mistyped command is named, with the fix')
  const badOption = await asya(['queues', '--depth'], {})
  t.equal(badOption.code, 2)
  t.match(badOption.stderr, /unknown option '--depth'/)
  const missingArg = await asya(['dlq', 'list'], {})
  t.equal(missingArg.code, 2)
  t.match(missingArg.stderr, /missing required argument 'actor'/)
  const bare = await asya([], {})
  t.equal(bare.code, 2)
  t.match(bare.stderr, /Usage: asya/)
  t.equal(bare.stdout, '')
  const version = await asya(['--version'], {})
  t.equal(version.code, 0)
  t.match(version.stdout, /^\d+\.\d+\.\d+\n$/)
})
