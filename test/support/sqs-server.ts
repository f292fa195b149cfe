/**
 * A real SQS-compatible server for tests: fauxqs (npm), in-process, on a free port. It speaks the
 * SQS JSON and query protocols the AWS SDK uses, so the transport under test runs unmodified.
 */
import { startFauxqs, type FauxqsServer } from 'fauxqs'

export interface SqsTestServer {
  endpoint: string
  region: string
  server: FauxqsServer
  stop(): Promise<void>
}

export const SQS_TEST_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' }

export async function startSqsServer(): Promise<SqsTestServer> {
  // The SDK's default chain reads these in sidecar processes started by tests.
  process.env.AWS_ACCESS_KEY_ID ??= SQS_TEST_CREDENTIALS.accessKeyId
  process.env.AWS_SECRET_ACCESS_KEY ??= SQS_TEST_CREDENTIALS.secretAccessKey
  const server = await startFauxqs({ port: 0, logger: false, host: '127.0.0.1' })
  return {
    endpoint: `http://127.0.0.1:${server.port}`,
    region: 'us-east-1',
    server,
    stop: () => server.stop(),
  }
}
