/**
 * The `asya` command line.
 *
 *   asya inject -f deployment.yaml [-n namespace]   print the manifest with the webhook's injection
 *   asya inject -f - < deployment.yaml
 *
 * Configuration comes from the same env as the system process (ASYA_SIDECAR_IMAGE, ASYA_TRANSPORT,
 * ASYA_RABBITMQ_*, ...), so the output is what admission would produce in that cluster.
 * Exit codes: 0 ok, 1 a workload would be denied (message on stderr), 2 usage or config error.
 */
import { readFileSync } from 'node:fs'
import { errorMessage } from '../errors.js'
import { readWebhookConfig } from '../system/config.js'
import { injectManifest } from './inject-manifest.js'

const USAGE = `usage: asya inject -f <file.yaml | -> [-n <namespace>]

Prints the manifest with the Asya sidecar injected into every pod template labelled
asya.sh/actor, exactly as the admission webhook would. Configure it with the system env
(ASYA_SIDECAR_IMAGE, ASYA_TRANSPORT, ASYA_RABBITMQ_HOST, ...).`

export interface CliIo {
  stdout: (s: string) => void
  stderr: (s: string) => void
  readStdin: () => string
  env: NodeJS.ProcessEnv
}

export function runCli(argv: readonly string[], io: CliIo): number {
  const [command, ...rest] = argv
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    io.stdout(USAGE + '\n')
    return command === undefined ? 2 : 0
  }
  if (command !== 'inject') {
    io.stderr(`asya: unknown command ${JSON.stringify(command)}\n${USAGE}\n`)
    return 2
  }
  let file: string | undefined
  let namespace = 'default'
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]
    if (a === '-f' || a === '--filename') file = rest[++i]
    else if (a === '-n' || a === '--namespace') namespace = rest[++i] ?? namespace
    else if (a === '-h' || a === '--help') {
      io.stdout(USAGE + '\n')
      return 0
    } else {
      io.stderr(`asya inject: unknown argument ${JSON.stringify(a)}\n${USAGE}\n`)
      return 2
    }
  }
  if (file === undefined) {
    io.stderr(`asya inject: -f is required\n${USAGE}\n`)
    return 2
  }
  let text: string
  let config
  try {
    text = file === '-' ? io.readStdin() : readFileSync(file, 'utf8')
    config = readWebhookConfig(io.env)
  } catch (err) {
    io.stderr(`asya inject: ${errorMessage(err)}\n`)
    return 2
  }
  const r = injectManifest(text, config, namespace)
  for (const w of r.warnings) io.stderr(`warning: ${w}\n`)
  if (r.errors.length > 0) {
    for (const e of r.errors) io.stderr(`error: ${e}\n`)
    return 1
  }
  io.stdout(r.output)
  return 0
}

const isMain = process.argv[1] !== undefined && /asya\.(ts|js)$/.test(process.argv[1]) && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, ''))
if (isMain) {
  process.exitCode = runCli(process.argv.slice(2), {
    stdout: (s) => void process.stdout.write(s),
    stderr: (s) => void process.stderr.write(s),
    readStdin: () => readFileSync(0, 'utf8'),
    env: process.env,
  })
}
