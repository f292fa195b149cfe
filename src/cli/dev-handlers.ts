/**
 * Which Python callable runs each actor of `asya dev`: the function (or Class.method) named after
 * the actor in the handler file, unless the user mapped it explicitly. Pure text search, no Python
 * start-up: a missing handler is a usage error before any process starts.
 */
import { readFileSync } from 'node:fs'
import { basename, dirname, resolve } from 'node:path'

import { isValidActorName } from '../names.js'
import type { DevActor } from './dev-pipeline.js'

/**
 * The handler for `actor` in a Python file: a top-level `def actor(` (dashes read as
 * underscores), else a method `def actor(` of a top-level class. Undefined when neither exists.
 */
export function findHandler(source: string, module: string, actor: string): string | undefined {
  const fn = actor.replace(/-/g, '_')
  if (new RegExp(`^(async\\s+)?def\\s+${fn}\\s*\\(`, 'm').test(source)) return `${module}.${fn}`
  let cls: string | undefined
  for (const line of source.split('\n')) {
    const c = /^class\s+([A-Za-z_]\w*)/.exec(line)
    if (c) cls = c[1]
    else if (/^\S/.test(line)) cls = undefined
    else if (cls && new RegExp(`^\\s+(async\\s+)?def\\s+${fn}\\s*\\(`).test(line)) return `${module}.${cls}.${fn}`
  }
  return undefined
}

/** Reads HANDLER_FILE and resolves one handler per actor (explicit mappings win). */
export function resolveActors(handlerFile: string, actorNames: readonly string[], explicit: Record<string, string>, modes: Record<string, 'payload' | 'envelope'>): { moduleDir: string; actors: DevActor[]; problems: string[] } {
  const file = resolve(handlerFile)
  const source = readFileSync(file, 'utf8')
  const module = basename(file).replace(/\.py$/, '')
  const problems: string[] = []
  const actors: DevActor[] = []
  for (const name of actorNames) {
    if (!isValidActorName(name)) {
      problems.push(`actor ${JSON.stringify(name)} is not a valid actor name (a DNS-1123 label)`)
      continue
    }
    const given = explicit[name]
    const handler = given === undefined ? findHandler(source, module, name) : given.includes('.') ? given : `${module}.${given}`
    if (handler === undefined) {
      problems.push(`no handler for actor "${name}" in ${handlerFile}: define \`def ${name.replace(/-/g, '_')}(payload)\` (or a method of that name in a class) or map it with --actor ${name}=${module}.function`)
      continue
    }
    actors.push({ name, handler, ...(modes[name] ? { mode: modes[name] } : {}) })
  }
  return { moduleDir: dirname(file), actors, problems }
}
