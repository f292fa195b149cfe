/**
 * Kubernetes access for the CLI: the user's kubeconfig and context, as kubectl finds them
 * (--kubeconfig, else $KUBECONFIG, else ~/.kube/config, else the in-cluster service account), and
 * API failures turned into errors that say what to fix.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { AppsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node'
import { apiErrorMessage, httpStatus } from '../controller/kube.js'
import { errorMessage } from '../errors.js'
import { CliError, EXIT, usageError } from './io.js'

export interface KubeFlags {
  kubeconfig?: string
  context?: string
  namespace?: string
  allNamespaces?: boolean
}

export interface Kube {
  kc: KubeConfig
  core: CoreV1Api
  apps: AppsV1Api
  custom: CustomObjectsApi
  /** The namespace to use: -n, else the context's, else `default`. */
  namespace: string
  /** undefined with -A (all namespaces). */
  scope: string | undefined
  /** Turns an API failure into a CliError naming the fix. */
  fail(err: unknown, what: string): CliError
}

export function connectKube(flags: KubeFlags, env: NodeJS.ProcessEnv): Kube {
  if (flags.allNamespaces && flags.namespace !== undefined) throw usageError('-n/--namespace and -A/--all-namespaces cannot be used together')
  const kc = new KubeConfig()
  const files = flags.kubeconfig !== undefined ? [flags.kubeconfig] : (env.KUBECONFIG ?? '').split(':').filter((f) => f !== '')
  const home = env.HOME ? join(env.HOME, '.kube', 'config') : undefined
  try {
    if (files.length > 0) {
      const present = files.filter((f) => existsSync(f))
      if (present.length === 0) throw usageError(`kubeconfig ${files.join(':')} does not exist: pass --kubeconfig FILE or fix KUBECONFIG`)
      kc.loadFromFile(present[0] as string)
      for (const f of present.slice(1)) {
        const other = new KubeConfig()
        other.loadFromFile(f)
        kc.mergeConfig(other)
      }
    } else if (home !== undefined && existsSync(home)) {
      kc.loadFromFile(home)
    } else if (env.KUBERNETES_SERVICE_HOST) {
      kc.loadFromCluster()
    } else {
      throw usageError('no kubeconfig found: pass --kubeconfig FILE, set KUBECONFIG, or create ~/.kube/config (e.g. `kind get kubeconfig > ~/.kube/config`)')
    }
  } catch (err) {
    if (err instanceof CliError) throw err
    throw usageError(`cannot read kubeconfig ${files[0] ?? home ?? ''}: ${errorMessage(err)}`)
  }
  if (flags.context !== undefined) {
    if (!kc.getContexts().some((c) => c.name === flags.context)) {
      throw usageError(`context "${flags.context}" is not in the kubeconfig; contexts: ${kc.getContexts().map((c) => c.name).join(', ') || 'none'}`)
    }
    kc.setCurrentContext(flags.context)
  }
  if (kc.getCurrentCluster() === null) throw usageError(`kubeconfig has no current context: pass --context NAME (contexts: ${kc.getContexts().map((c) => c.name).join(', ') || 'none'})`)
  const ctx = kc.getContextObject(kc.getCurrentContext())
  const namespace = flags.namespace ?? ctx?.namespace ?? 'default'
  const server = kc.getCurrentCluster()?.server ?? '?'
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    namespace,
    scope: flags.allNamespaces ? undefined : namespace,
    fail: (err, what) => {
      const status = httpStatus(err)
      const where = `the Kubernetes API at ${server} (context ${kc.getCurrentContext()})`
      if (status === 401) return new CliError(`${what}: ${where} rejected the credentials (401): refresh them (log in again) or pick another --context`)
      if (status === 403) return new CliError(`${what}: forbidden by ${where} (403): your user needs RBAC permission for it (${apiErrorMessage(err)})`)
      if (status !== undefined) return new CliError(`${what}: ${where} answered ${apiErrorMessage(err)}`)
      return new CliError(`${what}: cannot reach ${where}: ${errorMessage(err)}; check --context / --kubeconfig and that the cluster is up`, EXIT.failed)
    },
  }
}
