/** docs/cli.md is the commands' own --help: regenerate it with `npm run docs:cli` after a change. */
import { readFileSync } from 'node:fs'
import t from 'tap'
import { cliReference } from '../../src/cli/reference.js'

t.test('docs/cli.md matches the commands\' --help', async (t) => {
  const expected = await cliReference()
  const actual = readFileSync(new URL('../../docs/cli.md', import.meta.url), 'utf8')
  t.equal(actual, expected, 'docs/cli.md is out of date: run `npm run docs:cli`')
  t.match(expected, /## asya inject/, 'every command has a section')
  t.match(expected, /Examples:/, 'examples are part of the help')
})
