/**
 * What the images run: the build of tsconfig.build.json, started the way the Dockerfiles'
 * ENTRYPOINTs start it (no TypeScript loader), answers /healthz and exits 0 on SIGTERM. No container
 * engine is needed: this checks the compiled entrypoints, the part the Dockerfiles depend on.
 */
import { spawn, execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const outDir = join(root, '.tmp', `build-${randomBytes(4).toString('hex')}`)
mkdirSync(join(root, '.tmp'), { recursive: true })
t.teardown(() => rmSync(outDir, { recursive: true, force: true }))

function dockerfile(name: string): { entry: string[]; env: Record<string, string> } {
  const text = readFileSync(join(root, 'deploy/docker', name), 'utf8')
  const finalStage = text.slice(text.lastIndexOf('\nFROM '))
  const entry = JSON.parse(/^ENTRYPOINT\s+(\[.*\])/m.exec(finalStage)?.[1] ?? '[]') as string[]
  const env: Record<string, string> = {}
  for (const m of finalStage.matchAll(/^ENV\s+([A-Z_]+)=("[^"]*"|\S+)/gm)) env[m[1] as string] = (m[2] as string).replace(/^"|"$/g, '')
  return { entry, env }
}

async function startAndStop(t: Test, name: string, extraEnv: Record<string, string>): Promise<void> {
  const { entry, env } = dockerfile(name)
  t.equal(entry[0], 'node', `${name}: node entrypoint`)
  // /app in the image is the repository root here; dist/ is our temporary build directory.
  const script = join(outDir, (entry[1] as string).replace(/^dist\//, ''))
  // The image's ASYA_RUNTIME_SCRIPT points into /app; here the same file is in the checkout.
  const imageEnv = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v.replace(/^\/app\//, `${root}/`)]))
  const child = spawn(process.execPath, [script], { cwd: root, env: { PATH: process.env.PATH ?? '', ...imageEnv, ...extraEnv, ASYA_METRICS_ADDR: '127.0.0.1:0' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stderr.on('data', (d: Buffer) => (out += d.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const addr = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /"metrics":"([^"]+:\d+)"/.exec(out)
      if (m && !m[1]?.endsWith(':0')) resolve(m[1] as string)
    })
    void exited.then((code) => reject(new Error(`${name} exited ${String(code)} before listening: ${out}`)))
  })
  const res = await fetch(`http://${addr}/healthz`)
  t.equal(res.status, 200, `${name}: /healthz answers`)
  child.kill('SIGTERM')
  t.equal(await exited, 0, `${name}: SIGTERM → exit 0`)
}

t.test('compiled entrypoints of the images start and stop cleanly', async (t) => {
  execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', outDir], { cwd: root, stdio: 'inherit' })
  await startAndStop(t, 'system.Dockerfile', { ASYA_WEBHOOK_ENABLED: 'false', ASYA_CONTROLLER_ENABLED: 'false' })
  await startGatewayImage(t)
  await startAndStop(t, 'sidecar.Dockerfile', { ASYA_ACTOR_NAME: `img-${randomBytes(3).toString('hex')}`, ASYA_TRANSPORT: 'memory', ASYA_SOCKET_DIR: join(outDir, 'sock') })
})

/** The gateway image: GET /health, POST /mcp answered by the compiled MCP endpoint, SIGTERM → 0. */
async function startGatewayImage(t: Test): Promise<void> {
  const { entry } = dockerfile('gateway.Dockerfile')
  const script = join(outDir, (entry[1] as string).replace(/^dist\//, ''))
  const child = spawn(process.execPath, [script], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', ASYA_TRANSPORT: 'memory', ASYA_GATEWAY_PORT: '0', ASYA_GATEWAY_HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stderr.on('data', (d: Buffer) => (out += d.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /"port":(\d+)[^\n]*gateway listening/.exec(out)
      if (m) resolve(Number(m[1]))
    })
    void exited.then((code) => reject(new Error(`gateway exited ${String(code)} before listening: ${out}`)))
  })
  t.equal((await fetch(`http://127.0.0.1:${port}/health`)).status, 200, 'gateway.Dockerfile: /health answers')
  const init = await fetch(`http://127.0.0.1:${port}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: '*/*' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'image-test', version: '1' } } }),
  })
  t.equal(init.status, 200, 'gateway.Dockerfile: the compiled MCP endpoint answers initialize')
  t.ok(init.headers.get('mcp-session-id'), 'with a session id')
  child.kill('SIGTERM')
  t.equal(await exited, 0, 'gateway.Dockerfile: SIGTERM → exit 0')
}
