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
process.exitCode = cli.runCli(process.argv.slice(2), {
  stdout: (s) => void process.stdout.write(s),
  stderr: (s) => void process.stderr.write(s),
  // Read only when asked (-f -), so `-f file` never blocks on a terminal.
  readStdin: () => readFileSync(0, 'utf8'),
  env: process.env,
})
