#!/usr/bin/env node
// `asya` launcher: the compiled CLI when built (npm run build), else the TypeScript source.
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..', '..')
const built = join(root, 'dist', 'src', 'cli', 'asya.js')
let cli
if (existsSync(built)) cli = await import(pathToFileURL(built).href)
else {
  await import(pathToFileURL(join(root, 'scripts', 'register-ts.mjs')).href)
  cli = await import(pathToFileURL(join(here, 'asya.ts')).href)
}
async function confirm(question) {
  const { createInterface } = await import('node:readline/promises')
  const rl = createInterface({ input: process.stdin, output: process.stderr })
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim())
  } finally {
    rl.close()
  }
}
const interrupted = new Promise((resolve) => process.once('SIGINT', resolve))
const code = await cli.runCli(process.argv.slice(2), {
  stdout: (s) => void process.stdout.write(s),
  stderr: (s) => void process.stderr.write(s),
  // Read only when asked (-f -), so `-f file` never blocks on a terminal.
  readStdin: () => readFileSync(0, 'utf8'),
  env: process.env,
  stderrTty: process.stderr.isTTY ? process.stderr : undefined,
  interrupted,
  confirm: process.stdin.isTTY ? confirm : undefined,
})
process.exitCode = code
// Commands close what they open; a client library that keeps a socket alive must not hold the
// terminal (the timer is unref'd: it fires only if something else keeps the process running).
setTimeout(() => process.exit(code), 2000).unref()
