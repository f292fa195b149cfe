/**
 * Tool configuration in upstream's `routes.yaml` format (a file, or a directory whose *.yaml/*.yml
 * files are merged), parsed strictly: an unknown key, a wrong type, a missing route or a duplicate
 * tool fails the start with ASYA_ERR_TOOL_CONFIG_INVALID naming the file and the key; every
 * problem is reported at once.
 *
 * ```yaml
 * defaults: { progress: true, timeout: 300 }     # seconds
 * routes: { text-pipeline: [prep, infer, post] } # named routes
 * tools:
 *   - name: summarize
 *     description: Summarize a text
 *     parameters:
 *       text: { type: string, required: true }
 *       options: { type: object, properties: { max_words: { type: integer, default: 100 } } }
 *     route: text-pipeline                     # or [prep, infer, post]
 *     progress: true
 *     timeout: 60
 *     metadata: { team: nlp }
 *     wait: false                              # ours: MCP tools/call answers with the final result
 * ```
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { parseDocument } from 'yaml'
import { isPlainObject, type Json } from '../src/envelope.js'
import { END_ACTORS, isValidActorName } from '../src/names.js'
import { errors } from '../src/errors.js'

export type ParameterType = 'string' | 'number' | 'integer' | 'boolean' | 'object' | 'array'
const PARAMETER_TYPES: readonly ParameterType[] = ['string', 'number', 'integer', 'boolean', 'object', 'array']

export interface ToolParameter {
  type: ParameterType
  description?: string
  required: boolean
  default?: Json
  /** Allowed values (JSON-Schema `enum`). */
  options?: Json[]
  /** Element schema of an `array`. */
  items?: ToolParameter
  /** Properties of an `object`. */
  properties?: Record<string, ToolParameter>
}

export interface ToolDefinition {
  name: string
  description: string
  parameters: Record<string, ToolParameter>
  /** Resolved actors (a named route is resolved at load time). */
  actors: string[]
  /** Whether status updates are streamed (adds `stream_url` to the tool result). @default defaults.progress, else false */
  progress: boolean
  /** Seconds until the envelope fails with `envelope timed out`; 0 = no deadline. @default defaults.timeout, else 300 */
  timeoutSec: number
  metadata: Record<string, string>
  /** MCP: answer tools/call with the final result instead of the envelope id. @default false */
  wait: boolean
  /** File that defined the tool (for messages). */
  source: string
}

export interface ToolConfig {
  tools: ToolDefinition[]
  routes: Record<string, string[]>
}

/** JSON Schema of one parameter, with the real types (upstream advertised `object` as `string`, SPEC §11 #20). */
export function parameterSchema(p: ToolParameter): Record<string, Json> {
  const s: Record<string, Json> = { type: p.type }
  if (p.description !== undefined) s.description = p.description
  if (p.default !== undefined) s.default = p.default
  if (p.options !== undefined) s.enum = p.options
  if (p.type === 'array' && p.items) s.items = parameterSchema(p.items)
  if (p.type === 'object' && p.properties) {
    s.properties = Object.fromEntries(Object.entries(p.properties).map(([k, v]) => [k, parameterSchema(v)]))
    const req = Object.entries(p.properties).filter(([, v]) => v.required).map(([k]) => k)
    if (req.length > 0) s.required = req
  }
  return s
}

/** The tool's MCP `inputSchema`. */
export function toolInputSchema(tool: ToolDefinition): { type: 'object'; properties: Record<string, Json>; required?: string[] } {
  const properties = Object.fromEntries(Object.entries(tool.parameters).map(([k, v]) => [k, parameterSchema(v)]))
  const required = Object.entries(tool.parameters).filter(([, v]) => v.required).map(([k]) => k)
  return { type: 'object', properties, ...(required.length > 0 ? { required } : {}) }
}

/**
 * Turns call arguments into the envelope payload: defaults filled in, required parameters and
 * JSON types checked (recursively into objects and arrays). Returns the payload or the problems,
 * each naming the parameter. Unknown arguments are passed through (upstream does the same).
 */
export function argumentsToPayload(tool: ToolDefinition, args: unknown): { payload: { [k: string]: Json } } | { problems: string[] } {
  if (args !== undefined && args !== null && !isPlainObject(args)) return { problems: ['arguments must be a JSON object'] }
  const input = (args ?? {}) as { [k: string]: Json }
  const problems: string[] = []
  const payload = checkObject(tool.parameters, input, '', problems)
  return problems.length > 0 ? { problems } : { payload }
}

function checkObject(params: Record<string, ToolParameter>, input: { [k: string]: Json }, path: string, problems: string[]): { [k: string]: Json } {
  const out: { [k: string]: Json } = { ...input }
  for (const [name, p] of Object.entries(params)) {
    const where = path === '' ? name : `${path}.${name}`
    if (!(name in input) || input[name] === undefined) {
      if (p.default !== undefined) out[name] = structuredClone(p.default)
      else if (p.required) problems.push(`missing required parameter: ${where}`)
      continue
    }
    const v = checkValue(p, input[name] as Json, where, problems)
    if (v !== undefined) out[name] = v
  }
  return out
}

function checkValue(p: ToolParameter, v: Json, where: string, problems: string[]): Json | undefined {
  const bad = (): undefined => {
    problems.push(`parameter ${where} must be ${p.type === 'integer' || p.type === 'array' || p.type === 'object' ? 'an' : 'a'} ${p.type}`)
    return undefined
  }
  switch (p.type) {
    case 'string':
      if (typeof v !== 'string') return bad()
      break
    case 'number':
      if (typeof v !== 'number') return bad()
      break
    case 'integer':
      if (typeof v !== 'number' || !Number.isInteger(v)) return bad()
      break
    case 'boolean':
      if (typeof v !== 'boolean') return bad()
      break
    case 'array':
      if (!Array.isArray(v)) return bad()
      if (p.items) {
        const items = p.items
        return v.map((e, i) => checkValue(items, e, `${where}[${i}]`, problems) ?? e)
      }
      break
    case 'object':
      if (!isPlainObject(v)) return bad()
      if (p.properties) return checkObject(p.properties, v as { [k: string]: Json }, where, problems)
      break
  }
  if (p.options !== undefined && !p.options.some((o) => JSON.stringify(o) === JSON.stringify(v))) {
    problems.push(`parameter ${where} must be one of ${p.options.map((o) => JSON.stringify(o)).join(', ')}`)
    return undefined
  }
  return v
}

const TOP_KEYS = ['tools', 'routes', 'defaults']
const DEFAULT_KEYS = ['progress', 'timeout']
const TOOL_KEYS = ['name', 'description', 'parameters', 'route', 'progress', 'timeout', 'metadata', 'wait']
const PARAM_KEYS = ['type', 'description', 'required', 'default', 'options', 'items', 'properties']

interface RawFile {
  file: string
  tools: Array<{ raw: Record<string, unknown>; path: string }>
  routes: Record<string, string[]>
  defaults?: { progress?: boolean; timeout?: number }
}

class Problems {
  readonly list: string[] = []
  add(file: string, key: string, message: string): void {
    this.list.push(`${file}: ${key === '' ? '' : `${key}: `}${message}`)
  }
}

/** Loads ASYA_CONFIG_PATH (a file or a directory). Throws ASYA_ERR_TOOL_CONFIG_INVALID naming file and key. */
export function loadToolConfig(path: string): ToolConfig {
  let files: string[]
  try {
    files = statSync(path).isDirectory()
      ? readdirSync(path)
          .filter((f) => /\.ya?ml$/.test(f) && !f.startsWith('.'))
          .sort()
          .map((f) => join(path, f))
          .filter((f) => statSync(f).isFile())
      : [path]
  } catch (err) {
    throw new errors.ASYA_ERR_TOOL_CONFIG_INVALID(`ASYA_CONFIG_PATH ${path}: ${(err as Error).message}`, { details: { path } })
  }
  if (files.length === 0) throw new errors.ASYA_ERR_TOOL_CONFIG_INVALID(`ASYA_CONFIG_PATH ${path}: no .yaml or .yml files in the directory`, { details: { path } })
  return parseToolConfig(files.map((f) => ({ file: f, text: readFileSync(f, 'utf8') })))
}

/** Parses and merges tool config texts (later files' defaults win; duplicate tools or routes are errors). */
export function parseToolConfig(sources: Array<{ file: string; text: string }>): ToolConfig {
  const problems = new Problems()
  const raws: RawFile[] = []
  for (const { file, text } of sources) {
    const name = basename(file) === file ? file : file
    const doc = parseDocument(text, { uniqueKeys: true })
    if (doc.errors.length > 0) {
      for (const e of doc.errors) problems.add(name, '', `YAML: ${e.message.split('\n')[0]}`)
      continue
    }
    const raw = RawFileReader.read(name, doc.toJS() as unknown, problems)
    if (raw) raws.push(raw)
  }
  const routes: Record<string, string[]> = {}
  let defaults: { progress?: boolean; timeout?: number } = {}
  for (const raw of raws) {
    for (const [k, v] of Object.entries(raw.routes)) {
      if (k in routes) problems.add(raw.file, `routes.${k}`, 'duplicate route name across config files')
      routes[k] = v
    }
    if (raw.defaults) defaults = { ...defaults, ...raw.defaults }
  }
  const tools: ToolDefinition[] = []
  const seen = new Map<string, string>()
  for (const raw of raws) {
    for (const { raw: t, path } of raw.tools) {
      const tool = readTool(raw.file, path, t, routes, defaults, problems)
      if (!tool) continue
      const prev = seen.get(tool.name)
      if (prev !== undefined) problems.add(raw.file, `${path}.name`, `duplicate tool name ${JSON.stringify(tool.name)} (also in ${prev})`)
      seen.set(tool.name, raw.file)
      tools.push(tool)
    }
  }
  if (raws.length > 0 && tools.length === 0 && problems.list.length === 0) problems.add(raws.map((r) => r.file).join(', '), 'tools', 'no tools defined')
  if (problems.list.length > 0) {
    throw new errors.ASYA_ERR_TOOL_CONFIG_INVALID(`invalid tool config: ${problems.list.join('; ')}`, { details: { problems: problems.list } })
  }
  return { tools, routes }
}

const RawFileReader = {
  read(file: string, v: unknown, problems: Problems): RawFile | undefined {
    if (v === null || v === undefined) return { file, tools: [], routes: {} }
    if (!isPlainObject(v)) {
      problems.add(file, '', 'must be a mapping with tools, routes, defaults')
      return undefined
    }
    unknownKeys(file, '', v, TOP_KEYS, problems)
    const out: RawFile = { file, tools: [], routes: {} }
    if (v.routes !== undefined) {
      if (!isPlainObject(v.routes)) problems.add(file, 'routes', 'must be a mapping of route name to a list of actors')
      else for (const [k, actors] of Object.entries(v.routes)) {
        const list = actorList(file, `routes.${k}`, actors, problems)
        if (list) out.routes[k] = list
      }
    }
    if (v.defaults !== undefined) {
      if (!isPlainObject(v.defaults)) problems.add(file, 'defaults', 'must be a mapping')
      else {
        unknownKeys(file, 'defaults', v.defaults, DEFAULT_KEYS, problems)
        const d: { progress?: boolean; timeout?: number } = {}
        const p = optBool(file, 'defaults.progress', v.defaults.progress, problems)
        if (p !== undefined) d.progress = p
        const t = optTimeout(file, 'defaults.timeout', v.defaults.timeout, problems)
        if (t !== undefined) d.timeout = t
        out.defaults = d
      }
    }
    if (v.tools !== undefined) {
      if (!Array.isArray(v.tools)) problems.add(file, 'tools', 'must be a list')
      else v.tools.forEach((t, i) => {
        if (!isPlainObject(t)) problems.add(file, `tools[${i}]`, 'must be a mapping')
        else out.tools.push({ raw: t, path: `tools[${i}]` })
      })
    }
    return out
  },
}

function readTool(
  file: string,
  path: string,
  t: Record<string, unknown>,
  routes: Record<string, string[]>,
  defaults: { progress?: boolean; timeout?: number },
  problems: Problems,
): ToolDefinition | undefined {
  const before = problems.list.length
  const name = t.name
  if (typeof name !== 'string' || name === '') problems.add(file, `${path}.name`, 'is required (a non-empty string)')
  const at = typeof name === 'string' && name !== '' ? `${path}(${name})` : path
  unknownKeys(file, at, t, TOOL_KEYS, problems)
  if (t.description !== undefined && typeof t.description !== 'string') problems.add(file, `${at}.description`, 'must be a string')
  let actors: string[] | undefined
  if (t.route === undefined) problems.add(file, `${at}.route`, 'is required (a list of actors or the name of a route)')
  else if (typeof t.route === 'string') {
    actors = routes[t.route]
    if (!actors) problems.add(file, `${at}.route`, `route template ${JSON.stringify(t.route)} not found`)
  } else actors = actorList(file, `${at}.route`, t.route, problems)
  const parameters: Record<string, ToolParameter> = {}
  if (t.parameters !== undefined && t.parameters !== null) {
    if (!isPlainObject(t.parameters)) problems.add(file, `${at}.parameters`, 'must be a mapping of parameter name to definition')
    else for (const [k, p] of Object.entries(t.parameters)) {
      const param = readParameter(file, `${at}.parameters.${k}`, p, problems)
      if (param) parameters[k] = param
    }
  }
  const progress = optBool(file, `${at}.progress`, t.progress, problems)
  const timeout = optTimeout(file, `${at}.timeout`, t.timeout, problems)
  const wait = optBool(file, `${at}.wait`, t.wait, problems)
  const metadata: Record<string, string> = {}
  if (t.metadata !== undefined && t.metadata !== null) {
    if (!isPlainObject(t.metadata)) problems.add(file, `${at}.metadata`, 'must be a mapping of strings')
    else for (const [k, v] of Object.entries(t.metadata)) {
      if (typeof v !== 'string') problems.add(file, `${at}.metadata.${k}`, 'must be a string')
      else metadata[k] = v
    }
  }
  if (problems.list.length > before || !actors) return undefined
  return {
    name: name as string,
    description: typeof t.description === 'string' ? t.description : '',
    parameters,
    actors,
    progress: progress ?? defaults.progress ?? false,
    timeoutSec: timeout ?? defaults.timeout ?? 300,
    metadata,
    wait: wait ?? false,
    source: file,
  }
}

function readParameter(file: string, path: string, p: unknown, problems: Problems): ToolParameter | undefined {
  if (!isPlainObject(p)) {
    problems.add(file, path, 'must be a mapping with at least `type`')
    return undefined
  }
  unknownKeys(file, path, p, PARAM_KEYS, problems)
  const before = problems.list.length
  if (typeof p.type !== 'string' || !(PARAMETER_TYPES as readonly string[]).includes(p.type)) {
    problems.add(file, `${path}.type`, `must be one of ${PARAMETER_TYPES.join(', ')}`)
  }
  if (p.description !== undefined && typeof p.description !== 'string') problems.add(file, `${path}.description`, 'must be a string')
  const required = optBool(file, `${path}.required`, p.required, problems)
  if (p.options !== undefined && !Array.isArray(p.options)) problems.add(file, `${path}.options`, 'must be a list')
  let items: ToolParameter | undefined
  if (p.items !== undefined) {
    if (p.type !== 'array') problems.add(file, `${path}.items`, 'is only allowed on type array')
    else items = readParameter(file, `${path}.items`, p.items, problems)
  }
  let properties: Record<string, ToolParameter> | undefined
  if (p.properties !== undefined) {
    if (p.type !== 'object') problems.add(file, `${path}.properties`, 'is only allowed on type object')
    else if (!isPlainObject(p.properties)) problems.add(file, `${path}.properties`, 'must be a mapping')
    else {
      properties = {}
      for (const [k, v] of Object.entries(p.properties)) {
        const sub = readParameter(file, `${path}.properties.${k}`, v, problems)
        if (sub) properties[k] = sub
      }
    }
  }
  if (problems.list.length > before) return undefined
  return {
    type: p.type as ParameterType,
    ...(typeof p.description === 'string' ? { description: p.description } : {}),
    required: required ?? false,
    ...(p.default !== undefined ? { default: p.default as Json } : {}),
    ...(Array.isArray(p.options) ? { options: p.options as Json[] } : {}),
    ...(items ? { items } : {}),
    ...(properties ? { properties } : {}),
  }
}

function unknownKeys(file: string, path: string, v: Record<string, unknown>, allowed: string[], problems: Problems): void {
  for (const k of Object.keys(v)) {
    if (!allowed.includes(k)) problems.add(file, path === '' ? k : `${path}.${k}`, `unknown key (allowed: ${allowed.join(', ')})`)
  }
}

function actorList(file: string, path: string, v: unknown, problems: Problems): string[] | undefined {
  if (!Array.isArray(v) || v.length === 0) {
    problems.add(file, path, 'must be a non-empty list of actor names')
    return undefined
  }
  let ok = true
  v.forEach((a, i) => {
    if (!isValidActorName(a)) {
      problems.add(file, `${path}[${i}]`, `${JSON.stringify(a)} is not a DNS-1123 actor name`)
      ok = false
    } else if (END_ACTORS.includes(a)) {
      problems.add(file, `${path}[${i}]`, `must not name the end actor ${a} (the sidecars route there)`)
      ok = false
    }
  })
  return ok ? (v as string[]) : undefined
}

function optBool(file: string, path: string, v: unknown, problems: Problems): boolean | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'boolean') {
    problems.add(file, path, 'must be true or false')
    return undefined
  }
  return v
}

function optTimeout(file: string, path: string, v: unknown, problems: Problems): number | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    problems.add(file, path, 'must be a whole number of seconds (>= 0)')
    return undefined
  }
  return v
}
