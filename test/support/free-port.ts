import { createServer, type AddressInfo } from 'node:net'

/** A TCP port free on 127.0.0.1 right now (for servers that must be told their port up front). */
export async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()))
  const port = (s.address() as AddressInfo).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}
