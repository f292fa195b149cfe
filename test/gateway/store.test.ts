/**
 * Store invariants against both stores (memory and real PostgreSQL): final is final under racing
 * writers, monotonic progress under concurrent reports, gap-free live updates, deadline sweep; and
 * PostgreSQL specifics: the final-is-final trigger, migrations (concurrent, idempotent, over
 * upstream's sqitch schema), sweeps from two stores never double-fail.
 */
import pg from 'pg'
import t from 'tap'
import { PgEnvelopeStore } from '../../gateway/store/pg-store.js'
import type { EnvelopeStore } from '../../gateway/store/store.js'
import { completionRows, foldProgress, progressPercent, progressRows, progressStep, withEarlierMessages, type EnvelopeRecord, type FinalReport, type ProgressReport, type ProgressRow, type SequencedUpdate } from '../../gateway/store/types.js'
import { makeStore, quietLogger, sleep, testDatabase, until, type StoreKind } from './support.js'

let n = 0
const newId = () => `env-${process.pid}-${++n}-${Math.random().toString(36).slice(2, 8)}`

for (const kind of ['memory', 'postgres'] as StoreKind[]) {
  t.test(`${kind}: invariants`, async (t) => {
    const store = await makeStore(t, kind)

    t.test('racing finals: exactly one wins, and it stays', async (t) => {
      const id = newId()
      await store.create({ id, actors: ['a', 'b'], current: 0, payload: { x: 1 } })
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          i % 2 === 0
            ? store.finish(id, { status: 'succeeded', result: { i }, message: 'ok' })
            : store.finish(id, { status: 'failed', error: `e${i}`, message: 'bad' }),
        ),
      )
      t.equal(results.filter((r) => r.outcome === 'applied').length, 1)
      t.equal(results.filter((r) => r.outcome === 'final').length, 19)
      const rec = await store.get(id)
      const winner = results.find((r) => r.outcome === 'applied')
      t.equal(rec?.status, winner?.outcome === 'applied' ? winner.update.update.status : undefined)
      t.equal((await store.progress(id, { currentActorIdx: 1, state: 'received' })).outcome, 'final')
      t.equal((await store.markRunning(id, 'x')).outcome, 'final')
      const finals = (await store.updatesSince(id, 0)).filter((u) => u.update.status === 'succeeded' || u.update.status === 'failed')
      t.equal(finals.length, 1, 'one final update in the history')
    })

    t.test('concurrent progress reports: percentage never decreases, ends at the maximum', async (t) => {
      const id = newId()
      await store.create({ id, actors: ['a', 'b', 'c', 'd'], current: 0, payload: null })
      const seen: number[] = []
      const sub = store.subscribe(id, (u) => seen.push(u.update.progress_percent ?? -1))
      const reports = []
      for (let idx = 0; idx < 4; idx++) for (const state of ['received', 'processing', 'completed'] as const) reports.push({ currentActorIdx: idx, state })
      // Shuffled and fired at once, three times over.
      const all = [...reports, ...reports, ...reports].sort(() => Math.random() - 0.5)
      const results = await Promise.all(all.map((r) => store.progress(id, r)))
      t.ok(results.every((r) => r.outcome === 'applied' || r.outcome === 'unchanged'))
      const rec = await store.get(id)
      t.equal(rec?.progress_percent, 100)
      t.equal(rec?.actors_completed, 4)
      const rows = await store.updatesSince(id, 0)
      const history = rows.map((u) => u.update.progress_percent as number)
      for (let i = 1; i < history.length; i++) if ((history[i] as number) < (history[i - 1] as number)) t.fail(`history decreased at ${i}: ${history.join(',')}`)
      const steps = rows.map((u) => `${u.update.current_actor_idx}:${u.update.envelope_state}`)
      const order = reports.map((r) => `${r.currentActorIdx}:${r.state}`)
      const pos = steps.map((x) => order.indexOf(x))
      t.ok(pos.every((p, i) => p >= 0 && (i === 0 || p > (pos[i - 1] as number))), `each state at most once, in route order: ${steps.join(' ')}`)
      t.equal(steps.at(-1), '3:completed')
      await until(() => seen.length === history.length, 10_000, 'live updates')
      t.same(seen, history, 'live subscribers saw exactly the history, in order')
      sub.close()
    })

    t.test('a folded report records the same history as its reports one by one', async (t) => {
      const one = newId()
      const folded = newId()
      const actors = ['a', 'b', 'c']
      for (const id of [one, folded]) await store.create({ id, actors, current: 0, payload: null })
      const batch: ProgressReport[] = [
        { actors, currentActorIdx: 0, state: 'completed', message: 'c0' },
        { actors, currentActorIdx: 1, state: 'received', message: 'r1' },
        { actors, currentActorIdx: 1, state: 'processing', message: 'p1' },
        { actors, currentActorIdx: 1, state: 'completed' },
        { actors, currentActorIdx: 2, state: 'received', message: 'r2' },
      ]
      for (const r of batch) await store.progress(one, r)
      const writes = foldProgress(batch)
      t.equal(writes.length, 3, 'five reports, three writes')
      for (const r of writes) await store.progress(folded, r)
      const history = async (id: string) => (await store.updatesSince(id, 0)).map(({ update: u }) => ({ ...u, id: '', timestamp: '' }))
      t.same(await history(folded), await history(one))
      t.equal((await history(one)).length, 7, '0: r p c, 1: r p c, 2: r')
      const strip = (r: EnvelopeRecord | undefined) => r && { ...r, id: '', created_at: '', updated_at: '' }
      t.same(strip(await store.get(folded)), strip(await store.get(one)))

      // The same when the reports name their publisher (x-asya-from-actor) and overtook its own.
      const one2 = newId()
      const folded2 = newId()
      for (const id of [one2, folded2]) await store.create({ id, actors, current: 0, payload: null })
      const late: ProgressReport[] = [
        { actors, currentActorIdx: 2, state: 'received', message: 'r2', fromIdx: 1 },
        { actors, currentActorIdx: 2, state: 'processing', message: 'p2', fromIdx: 1 },
        { actors, currentActorIdx: 1, state: 'received', message: 'r1', fromIdx: 0 },
        { actors, currentActorIdx: 1, state: 'completed', message: 'c1', fromIdx: 0 },
      ]
      for (const r of late) await store.progress(one2, r)
      const writes2 = foldProgress(late)
      t.equal(writes2.length, 2)
      for (const r of writes2) await store.progress(folded2, r)
      t.same(await history(folded2), await history(one2))
      t.same((await history(one2)).map((u) => `${u.current_actor_idx}:${u.envelope_state}`), ['0:received', '0:processing', '0:completed', '1:received', '1:processing', '1:completed', '2:received', '2:processing'], 'every actor, in route order; the late reports of actor 1 add nothing')
      t.same(strip(await store.get(folded2)), strip(await store.get(one2)))
    })

    t.test('a subscriber joining mid-stream misses nothing and sees nothing twice', async (t) => {
      const id = newId()
      await store.create({ id, actors: ['a'], current: 0, payload: null })
      let stop = false
      let i = 0
      const writer = (async () => {
        while (!stop && i < 100_000) {
          await store.progress(id, { currentActorIdx: i, state: 'received', message: `m${i++}` })
          await new Promise((r) => setImmediate(r))
        }
      })()
      await until(async () => (await store.updatesSince(id, 0)).length > 5, 10_000, 'first writes')
      // History then live, the way the SSE endpoint does it: subscribe first, then read history.
      const live: SequencedUpdate[] = []
      const sub = store.subscribe(id, (u) => live.push(u))
      const history = await store.updatesSince(id, 0)
      await until(() => live.length > 5, 10_000, 'live writes')
      stop = true
      await writer
      await store.finish(id, { status: 'succeeded', result: 1, message: 'done' })
      await until(() => live.some((u) => u.update.status === 'succeeded'), 10_000, 'final live')
      const last = history.at(-1)?.seq ?? 0
      const merged = [...history, ...live.filter((u) => u.seq > last)]
      const all = await store.updatesSince(id, 0)
      t.same(merged.map((u) => u.seq), all.map((u) => u.seq))
      t.ok(history.length > 0 && live.length > 0, `${history.length} from history, ${live.length} live`)
      sub.close()
    })

    t.test('deadline sweep fails due envelopes once; final ones are left alone', async (t) => {
      const due = newId()
      const done = newId()
      const later = newId()
      await store.create({ id: due, actors: ['a'], current: 0, payload: null, deadline: new Date(Date.now() - 1000) })
      await store.create({ id: done, actors: ['a'], current: 0, payload: null, deadline: new Date(Date.now() - 1000) })
      await store.finish(done, { status: 'succeeded', result: 'r', message: 'ok' })
      await store.create({ id: later, actors: ['a'], current: 0, payload: null, timeoutSec: 3600 })
      t.notOk(await store.isActive(due), 'past its deadline: not active even before the sweep')
      const n1 = await store.expireDue()
      t.ok(n1 >= 1)
      t.equal((await store.get(due))?.status, 'failed')
      t.equal((await store.get(due))?.error, 'envelope timed out')
      t.equal((await store.get(done))?.status, 'succeeded')
      t.equal((await store.get(later))?.status, 'pending')
      t.ok(await store.isActive(later))
      t.equal(await store.expireDue(), 0, 'nothing left to expire')
    })

    t.test('create is idempotent; retention deletes final envelopes only', async (t) => {
      const id = newId()
      t.equal((await store.create({ id, actors: ['a'], current: 0, payload: 1 })).created, true)
      const again = await store.create({ id, actors: ['b'], current: 0, payload: 2 })
      t.equal(again.created, false)
      t.same(again.record.route.actors, ['a'])
      const live = newId()
      await store.create({ id: live, actors: ['a'], current: 0, payload: 1 })
      await store.finish(id, { status: 'succeeded', message: 'ok' })
      await sleep(20)
      const deleted = await store.deleteFinalBefore(new Date(Date.now() + 1000), 100_000)
      t.ok(deleted >= 1)
      t.equal(await store.get(id), undefined)
      t.ok(await store.get(live))
    })
  })
}

t.test('postgres specifics', async (t) => {
  const url = await testDatabase(t)

  t.test('replicas starting together migrate once, under the advisory lock', async (t) => {
    const stores = Array.from({ length: 3 }, () => new PgEnvelopeStore({ url, logger: quietLogger() }))
    const applied = await Promise.all(stores.map((s) => s.migrate()))
    t.same(applied.map((a) => a.length).sort(), [0, 0, 6])
    t.same(await stores[0]!.migrate(), [], 'idempotent')
    await Promise.all(stores.map((s) => s.close()))
    const c = new pg.Client({ connectionString: url })
    await c.connect()
    const v = await c.query('SELECT version FROM asya_gateway_migrations ORDER BY version')
    t.same(v.rows.map((r) => r.version), [1, 2, 3, 4, 5, 6])
    const cols = await c.query(`SELECT column_name FROM information_schema.columns WHERE table_name = 'envelopes' ORDER BY column_name`)
    t.same(cols.rows.map((r) => r.column_name).sort(), [
      'actors_completed', 'created_at', 'current_actor_idx', 'current_actor_name', 'deadline', 'error', 'id', 'message', 'parent_id', 'payload',
      'progress_percent', 'progress_step', 'result', 'route_actors', 'route_current', 'status', 'timeout_sec', 'total_actors', 'updated_at',
    ])
    await c.end()
  })

  t.test('final is final in SQL: a direct UPDATE of a final row changes nothing', async (t) => {
    const store = await makeStore(t, 'postgres', url)
    const id = newId()
    await store.create({ id, actors: ['a'], current: 0, payload: null })
    await store.finish(id, { status: 'succeeded', result: { v: 1 }, message: 'ok' })
    const c = new pg.Client({ connectionString: url })
    await c.connect()
    const r = await c.query(`UPDATE envelopes SET status = 'failed', error = 'late timeout' WHERE id = $1`, [id])
    t.equal(r.rowCount, 0, 'the trigger skipped the update')
    await c.end()
    t.equal((await store.get(id))?.status, 'succeeded')
  })

  t.test('over a database migrated by upstream sqitch (title-case statuses): ours applies and lowercases', async (t) => {
    const url2 = await testDatabase(t)
    const c = new pg.Client({ connectionString: url2 })
    await c.connect()
    // Upstream's 001–003 (as its sqitch would have left them), with an old title-case row.
    await c.query(`CREATE TABLE envelopes (id TEXT PRIMARY KEY, status TEXT NOT NULL, route_actors TEXT[] NOT NULL, route_current INTEGER NOT NULL DEFAULT 0,
      payload JSONB, result JSONB, error TEXT, timeout_sec INTEGER, deadline TIMESTAMPTZ, created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(), updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      progress_percent DECIMAL(5,2) DEFAULT 0.0, current_actor_idx INTEGER DEFAULT 0, current_actor_name TEXT, message TEXT, actors_completed INTEGER DEFAULT 0, total_actors INTEGER DEFAULT 0, parent_id TEXT)`)
    await c.query(`CREATE TABLE envelope_updates (id BIGSERIAL PRIMARY KEY, envelope_id TEXT NOT NULL REFERENCES envelopes(id) ON DELETE CASCADE, status TEXT NOT NULL, message TEXT,
      result JSONB, error TEXT, timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW(), progress_percent DECIMAL(5,2), actor TEXT, envelope_state TEXT)`)
    await c.query(`INSERT INTO envelopes (id, status, route_actors) VALUES ('old', 'Succeeded', '{a}')`)
    await c.end()
    const store = await makeStore(t, 'postgres', url2)
    t.equal((await store.get('old'))?.status, 'succeeded')
  })

  t.test('two stores sweeping at once fail each envelope once', async (t) => {
    const a = await makeStore(t, 'postgres', url)
    const b = await makeStore(t, 'postgres', url)
    const ids = Array.from({ length: 200 }, newId)
    for (const id of ids) await a.create({ id, actors: ['a'], current: 0, payload: null, deadline: new Date(Date.now() - 10) })
    const counts = await Promise.all([a.expireDue(50), b.expireDue(50), a.expireDue(50), b.expireDue(50), a.expireDue(1000), b.expireDue(1000)])
    t.equal(counts.reduce((x, y) => x + y, 0), 200)
    for (const id of ids.slice(0, 20)) {
      const u = (await a.updatesSince(id, 0)).filter((x) => x.update.status === 'failed')
      t.equal(u.length, 1)
    }
  })

  t.test('the one-statement progress and final writes record exactly what progressRows and completionRows say, in every case', async (t) => {
    // Every (route length, start actor, last recorded step, report, publisher named by the report)
    // up to 4 actors, with the envelope's state set directly in SQL: the SQL plan must give
    // progressRows' rows (steps, percentages to the cent, messages, including folded earlier ones)
    // and the same envelope.
    const store = await makeStore(t, 'postgres', url)
    const c = new pg.Client({ connectionString: url })
    await c.connect()
    t.teardown(() => c.end())
    const states = ['received', 'processing', 'completed'] as const
    interface Case { id: string; total: number; start: number; prev: number; pct: number; report: ProgressReport }
    const cases: Case[] = []
    for (let total = 1; total <= 4; total++)
      for (let start = 0; start < total; start++)
        for (let prev = -1; prev < 3 * total; prev++)
          for (let idx = 0; idx <= total; idx++)
            for (const state of states)
            for (let from = -1; from <= idx; from++) {
              const k = cases.length
              // The stored percentage: the natural one for the last step, or (every third case) a higher one to keep.
              const natural = prev < 0 ? 0 : progressPercent(Math.floor(prev / 3), states[prev % 3] as (typeof states)[number], total)
              const pct = k % 3 === 2 ? Math.max(natural, 60) : natural
              const report: ProgressReport = {
                currentActorIdx: idx,
                state,
                ...(k % 2 === 0 ? { message: `m${k}` } : {}),
                ...(k % 4 < 2 && state !== 'received' ? { earlierMessages: { received: `e${k}` } } : {}),
                ...(from >= 0 ? { fromIdx: from } : {}),
              }
              cases.push({ id: `plan-${k}-${newId()}`, total, start, prev, pct, report })
            }
    await c.query(
      `INSERT INTO envelopes (id, status, route_actors, route_current, progress_step, progress_percent, total_actors, actors_completed)
       SELECT id, 'running', (SELECT array_agg('a' || g) FROM generate_series(0, n - 1) g), st, ps, pc, n, 0
       FROM unnest($1::text[], $2::int[], $3::int[], $4::int[], $5::numeric[]) AS t(id, n, st, ps, pc)`,
      [cases.map((x) => x.id), cases.map((x) => x.total), cases.map((x) => x.start), cases.map((x) => x.prev), cases.map((x) => x.pct)],
    )
    // In chunks: thousands of queries queued at once would wait past the pool's connect timeout.
    const results: Awaited<ReturnType<typeof store.progress>>[] = []
    for (let i = 0; i < cases.length; i += 500) results.push(...(await Promise.all(cases.slice(i, i + 500).map((x) => store.progress(x.id, x.report)))))
    const got = await c.query<{ envelope_id: string; current_actor_idx: number; envelope_state: string; pct: number; message: string | null; actor: string | null }>(
      `SELECT envelope_id, current_actor_idx, envelope_state, progress_percent::float8 AS pct, message, actor FROM envelope_updates WHERE envelope_id LIKE 'plan-%' ORDER BY id`,
    )
    const rowsOf = new Map<string, string[]>()
    for (const r of got.rows) rowsOf.set(r.envelope_id, [...(rowsOf.get(r.envelope_id) ?? []), `${r.current_actor_idx}:${r.envelope_state}@${r.pct}${r.message !== null ? `"${r.message}"` : ''}${r.actor ?? '-'}`])
    const recs = await c.query<{ id: string; pct: number; actors_completed: number; progress_step: number; message: string | null }>(
      `SELECT id, progress_percent::float8 AS pct, actors_completed, progress_step, message FROM envelopes WHERE id LIKE 'plan-%'`,
    )
    const recOf = new Map(recs.rows.map((r) => [r.id, r]))
    let mismatches = 0
    for (const [i, x] of cases.entries()) {
      const r = x.report
      const want = withEarlierMessages(progressRows(x.prev, x.pct, x.total, r.currentActorIdx, r.state, r.message, x.start, r.fromIdx), r.currentActorIdx, r.earlierMessages)
      const wantRows = want.map((w) => `${w.idx}:${w.state}@${w.percent}${w.message !== undefined ? `"${w.message}"` : ''}${w.idx < x.total ? `a${w.idx}` : '-'}`)
      const rec = recOf.get(x.id)
      const wantRec = want.length === 0
        ? { pct: x.pct, done: 0, step: x.prev }
        : { pct: (want.at(-1) as ProgressRow).percent, done: want.reduce((m, w) => (w.state === 'completed' ? Math.max(m, w.idx + 1) : m), 0), step: progressStep(r.currentActorIdx, r.state) }
      const wantMessage = [...want].reverse().find((w) => w.message !== undefined)?.message ?? null
      const same =
        JSON.stringify(rowsOf.get(x.id) ?? []) === JSON.stringify(wantRows) &&
        results[i]?.outcome === (want.length === 0 ? 'unchanged' : 'applied') &&
        rec?.pct === wantRec.pct && rec.actors_completed === wantRec.done && rec.progress_step === wantRec.step && rec.message === wantMessage
      if (!same && mismatches++ < 5) t.fail(`case ${JSON.stringify(x)}: want ${JSON.stringify({ wantRows, wantRec, wantMessage })}, got ${JSON.stringify({ rows: rowsOf.get(x.id), rec, outcome: results[i]?.outcome })}`)
    }
    t.equal(mismatches, 0, `${cases.length} cases, ${got.rows.length} rows`)

    // Finals over every last recorded step: succeeded completes the last reporter (completionRows) first.
    interface FinalCase { id: string; total: number; prev: number; pct: number; report: FinalReport }
    const finals: FinalCase[] = []
    for (let total = 1; total <= 4; total++)
      for (let prev = -1; prev < 3 * total; prev++)
        for (const status of ['succeeded', 'failed'] as const) {
          const k = finals.length
          const pct = prev < 0 ? 0 : progressPercent(Math.floor(prev / 3), states[prev % 3] as (typeof states)[number], total)
          const report: FinalReport = status === 'succeeded'
            ? { status, result: { k }, message: 'ok', ...(k % 4 === 0 ? { actor: 'end', currentActorIdx: 9 } : {}) }
            : { status, error: `e${k}`, message: 'bad', ...(k % 4 === 1 ? { actors: ['x'], currentActorIdx: 0 } : {}) }
          finals.push({ id: `fin-${k}-${newId()}`, total, prev, pct, report })
        }
    await c.query(
      `INSERT INTO envelopes (id, status, route_actors, route_current, progress_step, progress_percent, total_actors, actors_completed, current_actor_idx)
       SELECT id, 'running', (SELECT array_agg('a' || g) FROM generate_series(0, n - 1) g), 0, ps, pc, n, GREATEST(0, (ps + 1) / 3), GREATEST(0, ps / 3)
       FROM unnest($1::text[], $2::int[], $3::int[], $4::numeric[]) AS t(id, n, ps, pc)`,
      [finals.map((x) => x.id), finals.map((x) => x.total), finals.map((x) => x.prev), finals.map((x) => x.pct)],
    )
    const fres = await Promise.all(finals.map((x) => store.finish(x.id, x.report)))
    let fmis = 0
    for (const [i, x] of finals.entries()) {
      const rows = (await store.updatesSince(x.id, 0)).map(({ update: u }) => `${u.status}:${u.current_actor_idx ?? ''}:${u.envelope_state ?? ''}@${u.progress_percent ?? ''}${u.actor ?? ''}`)
      const comp = x.report.status === 'succeeded' ? completionRows(x.prev, x.pct, x.total) : []
      const r = x.report
      const want = [
        ...comp.map((w) => `running:${w.idx}:${w.state}@${w.percent}a${w.idx}`),
        `${r.status}:${r.currentActorIdx ?? ''}:@${r.status === 'succeeded' ? 100 : ''}${r.actor ?? ''}`,
      ]
      const rec = await store.get(x.id)
      const lastComp = comp.at(-1)
      const wantRec = {
        status: r.status,
        pct: r.status === 'succeeded' ? 100 : x.pct,
        idx: r.currentActorIdx ?? lastComp?.idx ?? Math.max(0, Math.floor(x.prev / 3)),
        name: r.actor ?? (lastComp ? `a${lastComp.idx}` : undefined),
        done: r.status === 'succeeded' ? x.total : Math.max(0, Math.floor((x.prev + 1) / 3)),
      }
      const gotRec = { status: rec?.status, pct: rec?.progress_percent, idx: rec?.current_actor_idx, name: rec?.current_actor_name, done: rec?.actors_completed }
      if ((JSON.stringify(rows) !== JSON.stringify(want) || JSON.stringify(gotRec) !== JSON.stringify(wantRec) || fres[i]?.outcome !== 'applied') && fmis++ < 5) {
        t.fail(`final ${JSON.stringify(x)}: want ${JSON.stringify({ want, wantRec })}, got ${JSON.stringify({ rows, gotRec, outcome: fres[i]?.outcome })}`)
      }
    }
    t.equal(fmis, 0, `${finals.length} final cases`)
  })

  t.test('live updates cross stores (replicas) through LISTEN/NOTIFY', async (t) => {
    const a = await makeStore(t, 'postgres', url)
    const b = await makeStore(t, 'postgres', url)
    const id = newId()
    await a.create({ id, actors: ['a', 'b'], current: 0, payload: null })
    const seen: string[] = []
    const sub = b.subscribe(id, (u) => seen.push(u.update.envelope_state ?? u.update.status))
    await a.progress(id, { currentActorIdx: 0, state: 'received' })
    await a.progress(id, { currentActorIdx: 0, state: 'completed' })
    await a.finish(id, { status: 'succeeded', result: 'x', message: 'ok' })
    await until(() => seen.length === 4, 5000, 'updates on the other store')
    t.same(seen, ['received', 'processing', 'completed', 'succeeded'])
    sub.close()
  })
})

export type { EnvelopeStore }
