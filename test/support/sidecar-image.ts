/** Facts of the sidecar image (deploy/docker/sidecar.Dockerfile) that tests and benches reuse. */
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

/** NODE_OPTIONS the image sets, so sidecars started here run with the image's V8 settings. */
export function sidecarImageNodeOptions(): string {
  const dockerfile = readFileSync(join(root, 'deploy', 'docker', 'sidecar.Dockerfile'), 'utf8')
  const m = /^ENV NODE_OPTIONS="([^"]*)"/m.exec(dockerfile)
  if (!m?.[1]) throw new Error('no ENV NODE_OPTIONS in deploy/docker/sidecar.Dockerfile')
  return m[1]
}
