#!/usr/bin/env node
// Writes docs/cli.md from the `asya` commands' own --help (npm run docs:cli).
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
await import(pathToFileURL(join(root, 'scripts', 'register-ts.mjs')).href)
const { cliReference } = await import(pathToFileURL(join(root, 'src', 'cli', 'reference.ts')).href)
writeFileSync(join(root, 'docs', 'cli.md'), await cliReference())
console.log('wrote docs/cli.md')
