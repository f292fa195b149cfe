import { createServer, Socket, type AddressInfo } from 'node:net'

/** A TCP port free on 127.0.0.1 right now (for servers that must be told their port up front). */
export async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()))
  const port = (s.address() as AddressInfo).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

/** Whether something accepts TCP connections on 127.0.0.1:`port` (500 ms connect timeout). */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = new Socket()
    sock.setTimeout(500)
    sock.once('connect', () => {
      sock.destroy()
      resolve(true)
    })
    sock.once('error', () => resolve(false))
    sock.once('timeout', () => {
      sock.destroy()
      resolve(false)
    })
    sock.connect(port, '127.0.0.1')
  })
}
