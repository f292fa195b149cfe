import t from 'tap'
import { annotations, deployment, getCustom, rid, startEnv, waitFor, type Env } from './helpers.js'

let env: Env
t.before(async () => {
  env = await startEnv()
})
// A failed test must not leave its controller running into the next one.
t.afterEach(async () => {
  await env.stopControllers()
})
t.teardown(async () => {
  await env.close()
})

const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
const writesSince = (mark: number): Array<{ method: string; path: string }> => env.kube.requestLog.slice(mark).filter((e) => WRITES.has(e.method))

async function create(ns: string, name: string, actor: string, ann: Record<string, string> = {}): Promise<void> {
  env.created.add(`asya-${actor}`).add(`asya-${actor}-dlq`)
  await env.apis.apps.createNamespacedDeployment({ namespace: ns, body: deployment(ns, name, actor, ann) })
}

const ready = (ns: string, name: string) =>
  waitFor(`${ns}/${name} Ready`, async () => (await annotations(env.apis, ns, name))['asya.sh/status'] === 'Ready')

t.test('API server failures mid-reconcile (500, 409) are retried with backoff and converge', async (t) => {
  const ns = rid('ns')
  const actor = rid('a')
  env.kube.failNext(500, { method: 'POST', pathIncludes: '/scaledobjects' })
  env.kube.failNext(409, { method: 'PATCH', pathIncludes: `/namespaces/${ns}/deployments` })
  env.kube.failNext(500, { method: 'POST', pathIncludes: '/triggerauthentications' })
  const c = env.makeController()
  c.start()
  await create(ns, 'flaky', actor)
  await ready(ns, 'flaky')
  t.ok(await getCustom(env.apis, ns, 'scaledobjects', 'flaky'), 'ScaledObject created after the injected 500')
  t.ok(await getCustom(env.apis, ns, 'triggerauthentications', 'flaky-trigger-auth'), 'TriggerAuthentication created')
  const failed = env.kube.requestLog.filter((e) => e.status >= 409 && e.path.includes(ns) || (e.status === 500 && /scaledobjects|triggerauth/.test(e.path)))
  t.ok(failed.length >= 2, 'the injected failures were actually served')
  await c.stop()
})

t.test('controller restart: an unchanged cluster gets no write at all', async (t) => {
  const ns = rid('ns')
  const names = ['r1', 'r2', 'r3', 'r4']
  const a = env.makeController()
  a.start()
  for (const n of names) await create(ns, n, rid('a'), { 'asya.sh/max-replicas': '3' })
  for (const n of names) await ready(ns, n)
  await a.idle()
  await new Promise((r) => setTimeout(r, 200)) // let the status-annotation watch echoes settle
  await a.idle()
  const beforeRestart = env.kube.requestLog.length
  await a.resyncNow()
  await a.idle()
  t.same(writesSince(beforeRestart), [], 'a resync of unchanged workloads writes nothing')
  await a.stop()

  const mark = env.kube.requestLog.length
  const b = env.makeController()
  b.start()
  await b.idle()
  await new Promise((r) => setTimeout(r, 200))
  await b.idle()
  const reads = env.kube.requestLog.slice(mark).filter((e) => e.method === 'GET' && e.path.includes('/scaledobjects/'))
  t.ok(reads.length >= names.length, 'the new controller did reconcile every workload (it read their ScaledObjects)')
  t.same(writesSince(mark), [], 'and wrote nothing')
  await b.stop()
})

t.test('two replicas: exactly one leader reconciles; when it stops the other takes over', async (t) => {
  const leNs = rid('sys')
  const le = { namespace: leNs, name: 'asya-controller', leaseDurationMs: 1000, renewDeadlineMs: 700, retryPeriodMs: 150 }
  const c1 = env.makeController({ leaderElection: { ...le, identity: 'replica-1' } })
  const c2 = env.makeController({ leaderElection: { ...le, identity: 'replica-2' } })
  let both = false
  const sampler = setInterval(() => {
    if (c1.isLeader && c2.isLeader) both = true
  }, 20)
  c1.start()
  c2.start()
  const leader = await waitFor('a leader', () => (c1.isLeader ? c1 : c2.isLeader ? c2 : undefined))
  const follower = leader === c1 ? c2 : c1
  await new Promise((r) => setTimeout(r, 600))
  t.notOk(follower.isLeader, 'the other replica does not lead')
  const ns = rid('ns')
  await create(ns, 'one', rid('a'))
  await ready(ns, 'one')
  await leader.stop()
  await waitFor('failover', () => follower.isLeader, 10_000)
  t.pass('follower became leader after the leader stopped')
  await create(ns, 'two', rid('a'))
  await ready(ns, 'two')
  const lease = await env.apis.coordination.readNamespacedLease({ name: 'asya-controller', namespace: leNs })
  t.equal(lease.spec?.holderIdentity, follower.identity)
  t.ok((lease.spec?.leaseTransitions ?? 0) >= 1, 'lease transitions counted')
  clearInterval(sampler)
  t.notOk(both, 'never two leaders at the same time')
  await follower.stop()
})

t.test('a configured namespace list limits what is watched', async (t) => {
  const watched = rid('ns')
  const other = rid('ns')
  const c = env.makeController({ namespaces: [watched] })
  c.start()
  await create(other, 'outside', rid('a'))
  await create(watched, 'inside', rid('a'))
  await ready(watched, 'inside')
  await c.idle()
  t.equal((await annotations(env.apis, other, 'outside'))['asya.sh/status'], undefined, 'workload outside the list untouched')
  t.equal(await getCustom(env.apis, other, 'scaledobjects', 'outside'), undefined)
  await c.stop()
})

t.test('a failing initial list/watch is retried: the informer recovers and wires', async (t) => {
  const ns = rid('ns')
  await create(ns, 'late', rid('a'))
  env.kube.failNext(500, { method: 'GET', pathIncludes: '/apis/apps/v1/deployments' })
  const c = env.makeController()
  c.start()
  await ready(ns, 'late')
  t.ok(env.kube.requestLog.some((e) => e.status === 500 && e.path === '/apis/apps/v1/deployments'), 'the list did fail once')
  await c.stop()
})
