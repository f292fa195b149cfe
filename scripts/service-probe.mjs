// Shared by the test set-up scripts (ensure-broker.mjs, ensure-postgres.mjs): is a local port
// answering, wait for one, is a command installed.
import { spawnSync } from 'node:child_process'
import { Socket } from 'node:net'

export const portOpen = (port) =>
  new Promise((resolve) => {
    const s = new Socket()
    s.setTimeout(1000)
    s.once('connect', () => (s.destroy(), resolve(true)))
    s.once('error', () => resolve(false))
    s.once('timeout', () => (s.destroy(), resolve(false)))
    s.connect(port, '127.0.0.1')
  })

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

export const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0

/** Polls `port` once a second for up to `seconds`; true once it answers. */
export async function waitPort(port, seconds) {
  for (let i = 0; i < seconds; i++) {
    if (await portOpen(port)) return true
    await sleep(1000)
  }
  return false
}
