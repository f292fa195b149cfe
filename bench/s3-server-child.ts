/**
 * An S3-compatible server (fauxqs) in a process of its own for the benches, so the server does not
 * share an event loop with the client it is measured against. Prints `port=<n>` once listening;
 * exits on SIGTERM or when its parent goes away (stdin closes).
 */
import { startFauxqs } from 'fauxqs'

const server = await startFauxqs({ port: 0, logger: false, host: '127.0.0.1' })
process.stdout.write(`port=${server.port}\n`)
const stop = (): void => {
  void server.stop().finally(() => process.exit(0))
}
process.on('SIGTERM', stop)
process.stdin.on('end', stop)
process.stdin.resume()
