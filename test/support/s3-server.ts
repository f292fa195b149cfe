/**
 * A real S3-compatible server for tests: fauxqs (npm, the same emulator that serves SQS), started
 * in-process on a free port by each test file, optionally behind a TCP proxy that can be cut to
 * take the server off the network with its state intact (what a client sees when S3 is down).
 */
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'
import { startFauxqs, type FauxqsServer } from 'fauxqs'
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js'

export const S3_TEST_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' }

export interface S3TestServer {
  /** Endpoint through the proxy (cut()/restore() affect it). */
  endpoint: string
  /** Endpoint of the server itself. */
  directEndpoint: string
  region: string
  server: FauxqsServer
  proxy: TcpProxy
  /** Env for a sidecar using this server (bucket, endpoint, keys, region). */
  env(bucket: string): Record<string, string>
  createBucket(bucket: string): Promise<void>
  /** Every key under `prefix`, sorted. */
  list(bucket: string, prefix?: string): Promise<string[]>
  client: S3Client
  stop(): Promise<void>
}

export async function startS3Server(): Promise<S3TestServer> {
  process.env.AWS_ACCESS_KEY_ID ??= S3_TEST_CREDENTIALS.accessKeyId
  process.env.AWS_SECRET_ACCESS_KEY ??= S3_TEST_CREDENTIALS.secretAccessKey
  const server = await startFauxqs({ port: 0, logger: false, host: '127.0.0.1' })
  const proxy = await startTcpProxy('127.0.0.1', server.port)
  const directEndpoint = `http://127.0.0.1:${server.port}`
  const endpoint = `http://127.0.0.1:${proxy.port}`
  const region = 'us-east-1'
  const client = new S3Client({ endpoint: directEndpoint, region, credentials: S3_TEST_CREDENTIALS, forcePathStyle: true })
  return {
    endpoint,
    directEndpoint,
    region,
    server,
    proxy,
    client,
    env: (bucket) => ({
      ASYA_S3_BUCKET: bucket,
      ASYA_S3_ENDPOINT: endpoint,
      ASYA_S3_ACCESS_KEY: S3_TEST_CREDENTIALS.accessKeyId,
      ASYA_S3_SECRET_KEY: S3_TEST_CREDENTIALS.secretAccessKey,
      AWS_REGION: region,
    }),
    createBucket: async (bucket) => {
      await client.send(new CreateBucketCommand({ Bucket: bucket }))
    },
    list: async (bucket, prefix) => {
      const keys: string[] = []
      let token: string | undefined
      do {
        const res = await client.send(new ListObjectsV2Command({ Bucket: bucket, ...(prefix ? { Prefix: prefix } : {}), ...(token ? { ContinuationToken: token } : {}) }))
        for (const o of res.Contents ?? []) if (o.Key) keys.push(o.Key)
        token = res.IsTruncated ? res.NextContinuationToken : undefined
      } while (token)
      return keys.sort()
    },
    stop: async () => {
      client.destroy()
      await proxy.close()
      await server.stop()
    },
  }
}
