/**
 * Sidecar entry point: `node sidecar/main.js` in the image (`node --import ./scripts/register-ts.mjs
 * sidecar/main.ts` from a checkout). Exit codes: 0 after a clean SIGTERM drain; 1 for bad
 * configuration (one log line naming the variable), a runtime that never became ready, or a drain
 * that hit ASYA_SHUTDOWN_TIMEOUT.
 */
import { errorMessage, isAsyaError } from '../src/errors.js'
import { createLogger } from '../src/logger.js'
import { createTransport } from '../src/transport/create-transport.js'
import { readSidecarConfig, type SidecarConfig } from './config.js'
import { Sidecar } from './sidecar.js'

async function main(): Promise<void> {
  let config: SidecarConfig
  try {
    config = readSidecarConfig(process.env)
  } catch (err) {
    const logger = createLogger('asya-sidecar', { level: 'info' })
    logger.fatal({ code: isAsyaError(err) ? err.code : undefined, problems: isAsyaError(err) ? err.details.problems : undefined }, errorMessage(err))
    process.exitCode = 1
    return
  }
  const logger = createLogger('asya-sidecar', { level: config.logLevel, bindings: { actor: config.actorName } })
  const transport = await createTransport(config.transport, { logger, connectionName: `asya-sidecar-${config.actorName}` })
  const sidecar = new Sidecar({
    config,
    transport,
    logger,
    onFatal: () => {
      void sidecar.stop().finally(() => process.exit(1))
    },
  })
  let signalled = false
  const onSignal = (signal: string): void => {
    if (signalled) return
    signalled = true
    logger.info({ signal }, 'signal received; draining')
    void sidecar.stop().then((clean) => process.exit(clean ? 0 : 1))
  }
  process.on('SIGTERM', () => onSignal('SIGTERM'))
  process.on('SIGINT', () => onSignal('SIGINT'))
  try {
    await sidecar.start()
  } catch (err) {
    if (signalled) return
    logger.fatal({ code: isAsyaError(err) ? err.code : undefined, err: errorMessage(err) }, 'sidecar failed to start')
    await sidecar.stop()
    process.exit(1)
  }
}

void main()
