/**
 * The system process started from a checkout (`npm run system`): the same `startSystem` the image
 * runs, with what a laptop lacks filled in and said out loud.
 *
 *   npm run system                    # webhook + controller against the current kubeconfig
 *   npm run system -- --webhook-only  # the admission webhook alone (ASYA_CONTROLLER_ENABLED=false)
 *   npm run system -- --controller-only
 *   npm run system -- --dir /tmp/asya  # where the local certificate goes (default ./.asya-local)
 *
 * Local defaults, each only when the variable is unset: a serving certificate for the webhook is
 * made once into `.asya-local/webhook-certs/` (SANs localhost and 127.0.0.1, the CA beside it);
 * listeners on 127.0.0.1 (webhook :8443, metrics :8081). Leader election stays on: against a
 * cluster where Asya already runs, the local controller waits for the Lease instead of fighting
 * the installed one.
 * A controller without any kubeconfig fails the start naming the way out instead of retrying
 * against a cluster that is not there.
 */
import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { errorMessage, errors, isAsyaError } from '../errors.js'
import { createLogger } from '../logger.js'
import { generateCerts } from '../../webhook/certs.js'
import { readSystemConfig } from './config.js'
import { startSystem, type SystemProcess } from './main.js'

export interface LocalOptions {
  argv: readonly string[]
  env: NodeJS.ProcessEnv
  /** Directory the local certificate and state go to. @default <cwd>/.asya-local */
  stateDir?: string
}

export interface LocalPlan {
  env: NodeJS.ProcessEnv
  /** Human lines printed before start: what was filled in. */
  notes: string[]
  /** Where the generated CA is, when one was made or reused (for curl --cacert). */
  caFile?: string
  /** Certificate to generate before start. */
  makeCert?: { dir: string; namespace: string; service: string }
}

const USAGE = 'usage: npm run system [-- --webhook-only | --controller-only] [--dir DIR]'

function hasKubeconfig(env: NodeJS.ProcessEnv): boolean {
  if (env.KUBECONFIG !== undefined && env.KUBECONFIG.split(':').some((p) => p !== '' && existsSync(p))) return true
  if (env.KUBERNETES_SERVICE_HOST !== undefined) return true
  return existsSync(join(env.HOME ?? homedir(), '.kube', 'config'))
}

/** Pure: what the local start will run with. Throws ASYA_ERR_CONFIG_INVALID for bad flags. */
export function planLocal(o: LocalOptions): LocalPlan {
  const env: NodeJS.ProcessEnv = { ...o.env }
  const notes: string[] = []
  const flags = new Set<string>()
  let stateDir = o.stateDir
  for (let i = 0; i < o.argv.length; i++) {
    const f = o.argv[i] as string
    if (f === '--dir') {
      const d = o.argv[++i]
      if (d === undefined || d.startsWith('--')) throw new errors.ASYA_ERR_CONFIG_INVALID(`--dir needs a directory; ${USAGE}`)
      stateDir = d
    } else if (f === '--webhook-only' || f === '--controller-only') flags.add(f)
    else throw new errors.ASYA_ERR_CONFIG_INVALID(`unknown argument ${f}; ${USAGE}`)
  }
  if (flags.has('--webhook-only') && flags.has('--controller-only')) throw new errors.ASYA_ERR_CONFIG_INVALID(`--webhook-only and --controller-only exclude each other; ${USAGE}`)
  if (flags.has('--webhook-only')) env.ASYA_CONTROLLER_ENABLED = 'false'
  if (flags.has('--controller-only')) env.ASYA_WEBHOOK_ENABLED = 'false'
  const fill = (name: string, value: string, why: string): void => {
    if (env[name] !== undefined) return
    env[name] = value
    notes.push(`${name}=${value} (${why})`)
  }
  fill('ASYA_METRICS_ADDR', '127.0.0.1:8081', 'local default')
  const controller = env.ASYA_CONTROLLER_ENABLED !== 'false'
  const webhook = env.ASYA_WEBHOOK_ENABLED !== 'false'
  if (controller && !hasKubeconfig(env)) {
    throw new errors.ASYA_ERR_CONFIG_MISSING(
      'kubeconfig',
      'the controller needs a cluster and none was found in KUBECONFIG or ~/.kube/config; point KUBECONFIG at one, or run the webhook alone: npm run system -- --webhook-only',
    )
  }
  const plan: LocalPlan = { env, notes }
  if (webhook) {
    fill('ASYA_WEBHOOK_ADDR', '127.0.0.1:8443', 'local default')
    const certMode = env.ASYA_WEBHOOK_CERT_MODE ?? 'files'
    if (certMode === 'files' && env.ASYA_TLS_CERT_FILE === undefined && env.ASYA_TLS_KEY_FILE === undefined && !existsSync('/etc/asya/tls/tls.crt')) {
      const dir = resolve(stateDir ?? join(process.cwd(), '.asya-local'), 'webhook-certs')
      fill('ASYA_TLS_CERT_FILE', join(dir, 'tls.crt'), 'local certificate')
      fill('ASYA_TLS_KEY_FILE', join(dir, 'tls.key'), 'local certificate')
      plan.caFile = join(dir, 'ca.crt')
      if (!existsSync(join(dir, 'tls.crt')) || !existsSync(join(dir, 'tls.key'))) {
        plan.makeCert = { dir, namespace: env.ASYA_SYSTEM_NAMESPACE ?? env.POD_NAMESPACE ?? 'asya-system', service: env.ASYA_WEBHOOK_SERVICE ?? 'asya-webhook' }
      }
    }
  }
  return plan
}

export async function startLocal(o: LocalOptions): Promise<{ system: SystemProcess; plan: LocalPlan }> {
  const plan = planLocal(o)
  if (plan.makeCert) {
    await generateCerts({ ...plan.makeCert, extraNames: ['DNS:localhost', 'IP:127.0.0.1'] })
    plan.notes.push(`made a webhook certificate in ${plan.makeCert.dir} (CA ${plan.caFile ?? ''})`)
  }
  // One read of the whole configuration (every problem named at once), as the cluster entry point.
  const config = readSystemConfig(plan.env)
  const logger = createLogger('asya-system', { level: config.logLevel })
  const system = await startSystem({ env: plan.env, config, logger })
  return { system, plan }
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href
if (isMain) {
  startLocal({ argv: process.argv.slice(2), env: process.env })
    .then(({ system, plan }) => {
      for (const n of plan.notes) process.stderr.write(`asya system (local): ${n}\n`)
      const lines = [`metrics, /healthz, /readyz: ${system.metricsUrl}`]
      if (system.webhookUrl) {
        lines.push(`admission webhook: ${system.webhookUrl}/mutate`)
        if (plan.caFile) lines.push(`try: curl --cacert ${plan.caFile} ${system.webhookUrl}/readyz`)
      }
      lines.push(`controller: ${plan.env.ASYA_CONTROLLER_ENABLED === 'false' ? 'off' : 'on'}; Ctrl-C stops`)
      for (const l of lines) process.stderr.write(`asya system (local): ${l}\n`)
      const shutdown = (): void => {
        system.stop().then(
          () => process.exit(0),
          (err: unknown) => {
            process.stderr.write(`asya system (local): shutdown failed: ${errorMessage(err)}\n`)
            process.exit(1)
          },
        )
      }
      process.once('SIGTERM', shutdown)
      process.once('SIGINT', shutdown)
    })
    .catch((err: unknown) => {
      process.stderr.write(`asya system (local): ${isAsyaError(err) ? `${err.code}: ` : ''}${errorMessage(err)}\n`)
      process.exit(1)
    })
}
