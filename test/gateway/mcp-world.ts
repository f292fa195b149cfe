/**
 * A whole local Asya for MCP tests and the demo: a gateway with the MCP plugin, real actors
 * (asya_runtime.py + in-process sidecars reporting progress to the gateway) and both end actors
 * (runtime-less sidecars posting the final status), all on one in-memory broker.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { mcpPlugin } from '../../gateway/mcp/plugin.js'
import { MemoryBroker, MemoryTransport } from '../../src/transport/memory-transport.js'
import { readSidecarConfig } from '../../sidecar/config.js'
import { Sidecar } from '../../sidecar/sidecar.js'
import { createLogger } from '../../src/logger.js'
import { startActor, type TestActor, type World } from '../support/actor-harness.js'
import { startGateway, type Teardown, type TestGateway } from './support.js'

export interface McpWorld {
  gateway: TestGateway
  url: string
  broker: MemoryBroker
  actors: TestActor[]
}

export async function startMcpWorld(t: Teardown, o: { tools: string; actors: Array<{ name: string; handler: string }>; env?: Record<string, string> }): Promise<McpWorld> {
  const broker = new MemoryBroker()
  const gateway = await startGateway(t, { transport: new MemoryTransport({ broker }), tools: o.tools, plugins: [mcpPlugin()], ...(o.env ? { env: o.env } : {}) })
  const world: World = { transport: 'memory', exchange: '', happyEnd: 'happy-end', errorEnd: 'error-end', env: { ASYA_TRANSPORT: 'memory', ASYA_GATEWAY_URL: gateway.url } }
  const actors: TestActor[] = []
  const ends: Sidecar[] = []
  const socketDir = mkdtempSync(join(tmpdir(), 'asya-mcp-end-'))
  t.teardown(async () => {
    for (const a of actors) await a.stop().catch(() => undefined)
    for (const s of ends) await s.stop().catch(() => undefined)
    rmSync(socketDir, { recursive: true, force: true })
  })
  for (const a of o.actors) actors.push(await startActor({ ...a, world, transport: new MemoryTransport({ broker }) }))
  for (const end of ['happy-end', 'error-end']) {
    const config = readSidecarConfig({ ...world.env, ASYA_ACTOR_NAME: end, ASYA_IS_END_ACTOR: 'true', ASYA_RUNTIME_ENABLED: 'false', ASYA_SOCKET_DIR: socketDir })
    const sidecar = new Sidecar({ config, transport: new MemoryTransport({ broker }), logger: createLogger('asya-sidecar', { level: process.env.ASYA_TEST_LOG_LEVEL ?? 'silent' }), serveHttp: false })
    await sidecar.start()
    ends.push(sidecar)
  }
  return { gateway, url: gateway.url, broker, actors }
}
