/**
 * The S3 object store against a real S3-compatible server (fauxqs): writes, reads, deletes,
 * errors with their codes, settings from env, the result key layout, and an outage (the server
 * taken off the network for a few seconds, then back with its state).
 */
import t, { type Test } from 'tap'
import { EnvReader } from '../../src/config/env.js'
import { isAsyaError, type AsyaError, type AsyaErrorCode } from '../../src/errors.js'
import { S3ObjectStore } from '../../src/storage/object-store.js'
import { lastActor, resultKey, resultTimestamp, safeSegment } from '../../src/storage/result-keys.js'
import { readS3Settings } from '../../src/storage/s3-settings.js'
import { rand } from '../support/actor-harness.js'
import { S3_TEST_CREDENTIALS, startS3Server } from '../support/s3-server.js'

const s3 = await startS3Server()
t.teardown(() => s3.stop())

/** Awaits `p`, which must reject with an AsyaError of `code` (and satisfy `extra`). */
async function rejectsWith(t: Test, p: Promise<unknown>, code: AsyaErrorCode, extra: (err: AsyaError) => boolean = () => true): Promise<void> {
  try {
    await p
    t.fail(`expected ${code}, it resolved`)
  } catch (err) {
    t.ok(isAsyaError(err, code) && extra(err), `${code}: ${(err as Error).message}`)
  }
}

function store(bucket: string, endpoint = s3.endpoint): S3ObjectStore {
  return new S3ObjectStore({ bucket, endpoint, region: s3.region, credentials: S3_TEST_CREDENTIALS, forcePathStyle: true, maxAttempts: 1, requestTimeoutMs: 2000 })
}

t.test('put, get, overwrite, delete against the server', async (t) => {
  const bucket = `b-${rand()}`
  await s3.createBucket(bucket)
  const st = store(bucket)
  t.teardown(() => st.close())
  await st.check()
  const key = 'happy-asya/2026-12-01T00:00:00.000000Z/a/x.json'
  await st.put(key, Buffer.from('{"a":1}'), { metadata: { 'asya-id': 'x' } })
  t.same(JSON.parse((await st.get(key)).toString()), { a: 1 })
  t.same(await s3.list(bucket), [key])
  const big = Buffer.alloc(5 * 1024 * 1024, 7)
  await st.put(key, big, { contentType: 'application/octet-stream' })
  t.ok((await st.get(key)).equals(big), '5 MiB body round-trips byte for byte')
  await st.delete(key)
  t.same(await s3.list(bucket), [])
  await st.delete(key) // a missing key is not an error
  await rejectsWith(t, st.get(key), 'ASYA_ERR_STORAGE_NOT_FOUND', (err) => err.details.missing === 'key')
})

t.test('a missing bucket is ASYA_ERR_STORAGE_NOT_FOUND naming the bucket', async (t) => {
  const st = store(`missing-${rand()}`)
  t.teardown(() => st.close())
  await rejectsWith(t, st.check(), 'ASYA_ERR_STORAGE_NOT_FOUND', (err) => err.details.missing === 'bucket')
  await rejectsWith(t, st.put('k', Buffer.from('x')), 'ASYA_ERR_STORAGE_NOT_FOUND', (err) => /missing-/.test(err.message))
})

t.test('server off the network for 3 s: calls fail with ASYA_ERR_STORAGE, then work again, state intact', async (t) => {
  const bucket = `b-${rand()}`
  await s3.createBucket(bucket)
  const st = store(bucket)
  t.teardown(() => st.close())
  await st.put('before', Buffer.from('1'))
  await s3.proxy.cut()
  try {
    await rejectsWith(t, st.put('during', Buffer.from('2')), 'ASYA_ERR_STORAGE')
    await new Promise((r) => setTimeout(r, 3000))
    await rejectsWith(t, st.get('before'), 'ASYA_ERR_STORAGE')
  } finally {
    await s3.proxy.restore()
  }
  await st.put('after', Buffer.from('3'))
  t.equal((await st.get('before')).toString(), '1')
  t.same(await s3.list(bucket), ['after', 'before'])
})

t.test('settings: upstream names, defaults, all problems at once', async (t) => {
  const r = new EnvReader({ ASYA_S3_BUCKET: 'results', ASYA_S3_ENDPOINT: 'http://minio:9000/', AWS_REGION: 'eu-west-1' })
  const s = readS3Settings(r)
  r.finish()
  t.same(s, { bucket: 'results', endpoint: 'http://minio:9000', region: 'eu-west-1', forcePathStyle: true, resultsPrefix: 'happy-asya/', errorsPrefix: 'error-asya/' })
  const aws = new EnvReader({ ASYA_S3_BUCKET: 'results' })
  t.same(readS3Settings(aws), { bucket: 'results', region: 'us-east-1', forcePathStyle: false, resultsPrefix: 'happy-asya/', errorsPrefix: 'error-asya/' }, 'no keys: SDK default chain / pod identity')
  const bad = new EnvReader({ ASYA_S3_BUCKET: 'Bad_Bucket', ASYA_S3_ENDPOINT: 'minio:9000', ASYA_S3_ACCESS_KEY: 'k', ASYA_S3_RESULTS_PREFIX: '/abs/' })
  readS3Settings(bad)
  try {
    bad.finish()
    t.fail('expected a configuration error')
  } catch (err) {
    const m = (err as Error).message
    for (const n of ['ASYA_S3_BUCKET', 'ASYA_S3_ENDPOINT', 'ASYA_S3_SECRET_KEY', 'ASYA_S3_RESULTS_PREFIX']) t.match(m, n, `names ${n}`)
  }
})

t.test('key layout {prefix}{UTC %Y-%m-%dT%H:%M:%S.%fZ}/{last_actor}/{id}.json', async (t) => {
  const at = new Date(Date.UTC(2026, 11, 1, 9, 5, 7, 42))
  t.equal(resultTimestamp(at), '2026-12-01T09:05:07.042000Z')
  t.equal(resultKey('happy-asya/', at, 'summarize', 'abc-123'), 'happy-asya/2026-12-01T09:05:07.042000Z/summarize/abc-123.json')
  t.equal(safeSegment('../../etc/passwd'), '..%2F..%2Fetc%2Fpasswd', 'an id cannot leave its folder')
  t.equal(safeSegment('..'), '%2E%2E')
  t.equal(safeSegment('a b%c'), 'a%20b%25c')
  const route = (current: number) => ({ actors: ['a', 'b', 'c'], current })
  t.equal(lastActor({ route: route(3), payload: null }, 'happy'), 'c', 'route done: the last actor')
  t.equal(lastActor({ route: route(0), payload: null }, 'happy'), 'a', 'handler returned [] at index 0: upstream names no actor here')
  t.equal(lastActor({ route: route(1), payload: null }, 'happy'), 'b')
  t.equal(lastActor({ route: route(7), payload: null }, 'happy'), 'c', 'current set past the end')
  t.equal(lastActor({ route: route(1), payload: { error: 'processing_error', details: { actor: 'b' } } }, 'error'), 'b')
  t.equal(lastActor({ route: route(0), payload: { error: 'x' } }, 'error'), 'a', 'no details.actor: the actor at current')
  t.equal(lastActor({ route: { actors: [], current: 0 }, payload: null }, 'happy'), 'unknown')
})
