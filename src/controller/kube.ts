import {
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node'

/** The typed API clients the controller uses (fixed REST paths, no discovery round-trips). */
export interface KubeApis {
  core: CoreV1Api
  apps: AppsV1Api
  custom: CustomObjectsApi
  coordination: CoordinationV1Api
}

export function makeKubeApis(kc: KubeConfig): KubeApis {
  return {
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    coordination: kc.makeApiClient(CoordinationV1Api),
  }
}

/** Request options that send a body as a JSON merge patch (RFC 7386). */
export const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch)

/** HTTP status of a failed API call (client-node's ApiException), if any. */
export function httpStatus(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code
    if (typeof code === 'number' && code >= 100 && code < 600) return code
  }
  return undefined
}

export const isNotFound = (err: unknown): boolean => httpStatus(err) === 404
export const isConflict = (err: unknown): boolean => httpStatus(err) === 409

/** Short, log-safe description of an API failure (status + server message, never the request). */
export function apiErrorMessage(err: unknown): string {
  const status = httpStatus(err)
  if (status !== undefined) {
    const body = (err as { body?: unknown }).body
    let msg: string | undefined
    if (typeof body === 'string') {
      try {
        const parsed = JSON.parse(body) as { message?: unknown }
        if (typeof parsed.message === 'string') msg = parsed.message
      } catch {
        msg = body.slice(0, 200)
      }
    } else if (typeof body === 'object' && body !== null && typeof (body as { message?: unknown }).message === 'string') {
      msg = (body as { message: string }).message
    }
    return `HTTP ${status}${msg ? `: ${msg}` : ''}`
  }
  return err instanceof Error ? err.message : String(err)
}
