/**
 * A TCP proxy that can be cut and restored, to take a server (e.g. the SQS emulator) off the
 * network and bring it back with its state intact: what a client sees when a managed service
 * restarts or a network path fails.
 */
import { createServer, connect, type Server, type Socket, type AddressInfo } from 'node:net'

export interface TcpProxy {
  port: number
  /** Closes the listener and resets every open connection. */
  cut(): Promise<void>
  /** Listens again on the same port. */
  restore(): Promise<void>
  close(): Promise<void>
}

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>()
  let server: Server | undefined
  let port = 0
  const listen = async (): Promise<void> => {
    const s = createServer((client) => {
      const upstream = connect(targetPort, targetHost)
      sockets.add(client)
      sockets.add(upstream)
      const drop = (): void => {
        client.destroy()
        upstream.destroy()
        sockets.delete(client)
        sockets.delete(upstream)
      }
      client.on('error', drop)
      upstream.on('error', drop)
      client.on('close', drop)
      upstream.on('close', drop)
      client.pipe(upstream)
      upstream.pipe(client)
    })
    await new Promise<void>((resolve) => s.listen(port, '127.0.0.1', () => resolve()))
    port = (s.address() as AddressInfo).port
    server = s
  }
  const cut = async (): Promise<void> => {
    const s = server
    server = undefined
    for (const sock of sockets) sock.resetAndDestroy()
    sockets.clear()
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()))
  }
  await listen()
  return {
    get port() {
      return port
    },
    cut,
    restore: listen,
    close: cut,
  }
}
