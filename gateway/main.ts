/**
 * Gateway entry point: `npm run gateway` (dist/gateway/main.js). Exit codes: 0 after a clean
 * SIGTERM shutdown; 1 for bad configuration (one log line naming every bad variable or tool
 * config key), a store that cannot be reached or migrated, or a shutdown past ASYA_SHUTDOWN_TIMEOUT.
 */
import { errorMessage, isAsyaError } from '../src/errors.js'
import { createLogger } from '../src/logger.js'
import { readGatewayConfig, type GatewayConfig } from './config.js'
import { Gateway, type GatewayPlugin } from './gateway.js'
import { mcpPlugin } from './mcp/plugin.js'

/** Plugins of the production process (the MCP endpoint registers itself here). */
const PLUGINS: GatewayPlugin[] = [mcpPlugin()]

async function main(): Promise<void> {
  let config: GatewayConfig
  try {
    config = readGatewayConfig(process.env)
  } catch (err) {
    createLogger('asya-gateway').fatal({ code: isAsyaError(err) ? err.code : undefined, problems: isAsyaError(err) ? err.details.problems : undefined }, errorMessage(err))
    process.exitCode = 1
    return
  }
  const logger = createLogger('asya-gateway', { level: config.logLevel })
  let gateway: Gateway
  try {
    gateway = await Gateway.create({ config, logger, plugins: PLUGINS })
  } catch (err) {
    logger.fatal({ code: isAsyaError(err) ? err.code : undefined, problems: isAsyaError(err) ? err.details.problems : undefined }, errorMessage(err))
    process.exitCode = 1
    return
  }
  let signalled = false
  const onSignal = (signal: string): void => {
    if (signalled) return
    signalled = true
    logger.info({ signal }, 'signal received; shutting down')
    void gateway.stop().then((clean) => process.exit(clean ? 0 : 1))
  }
  process.on('SIGTERM', () => onSignal('SIGTERM'))
  process.on('SIGINT', () => onSignal('SIGINT'))
  try {
    await gateway.start()
  } catch (err) {
    if (signalled) return
    logger.fatal({ code: isAsyaError(err) ? err.code : undefined, err: errorMessage(err) }, 'gateway failed to start')
    await gateway.stop()
    process.exit(1)
  }
}

void main()
