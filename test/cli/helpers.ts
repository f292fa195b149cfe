/** Runs the `asya` CLI in-process (runCli) against real parts, capturing its output. */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { KubeConfig } from '@kubernetes/client-node'
import { runCli } from '../../src/cli/asya.js'
import type { CliIo } from '../../src/cli/io.js'

export interface CliRun {
  code: number
  stdout: string
  stderr: string
}

export async function asya(args: string[], env: NodeJS.ProcessEnv, extra: Partial<CliIo> = {}): Promise<CliRun> {
  let stdout = ''
  let stderr = ''
  const code = await runCli(args, {
    stdout: (s) => (stdout += s),
    stderr: (s) => (stderr += s),
    readStdin: () => '',
    env,
    ...extra,
  })
  return { code, stdout, stderr }
}

/** Writes a kubeconfig file for the test API server (what a user's ~/.kube/config would be). */
export function writeKubeconfig(kc: KubeConfig): string {
  const dir = mkdtempSync(join(tmpdir(), 'asya-cli-kube-'))
  const file = join(dir, 'config')
  writeFileSync(file, kc.exportConfig())
  return file
}

/** Rows of a kubectl-style table, split on runs of 2+ spaces. */
export function rows(table: string): string[][] {
  return table
    .trimEnd()
    .split('\n')
    .map((l) => l.trim().split(/\s{2,}/))
}
