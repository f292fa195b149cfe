/**
 * PostgreSQL envelope store (`pg`): upstream's tables, every replica shares it.
 *
 * - Each write is one statement (one round trip, no explicit transaction) that locks the envelope
 *   row first (FOR UPDATE in a CTE, or the UPDATE itself), then appends its `envelope_updates`
 *   rows, so per envelope the update ids increase in commit order; it `pg_notify`s each update
 *   (the row as JSON, or the envelope id when too large), delivered on commit in commit order.
 * - Final is final twice over: writes only match non-final rows, and a trigger skips any UPDATE of
 *   a final row (migration 005).
 * - Progress is computed against the locked row, in SQL (PROGRESS_SQL: progressRows of types.ts):
 *   stale reports add nothing, implied states are recorded in order, the percentage never
 *   decreases; a `succeeded` final completes the last reporter first (FINISH_SQL).
 * - Deadlines are enforced by {@link PgEnvelopeStore.expireDue} with `FOR UPDATE SKIP LOCKED`, on
 *   the database clock: any replica can sweep, none double-fails, restarts lose nothing.
 * - Live updates: one LISTEN connection per replica signals the {@link UpdateHub}, which reads the
 *   rows after the last one it delivered (so a notification lost across a reconnect costs nothing:
 *   the hub re-reads every subscribed envelope after reconnecting).
 */
import pg from 'pg'
import { AsyaError, errorMessage, errors } from '../../src/errors.js'
import type { Logger } from '../../src/logger.js'
import { MIGRATIONS } from './migrations.js'
import type { EnvelopeStore, StoreSubscription, UpdateListener } from './store.js'
import {
  ACTOR_STATES,
  progressStep,
  type EnvelopeRecord,
  type EnvelopeStatus,
  type EnvelopeUpdate,
  type FinalReport,
  type NewEnvelope,
  type ProgressReport,
  type SequencedUpdate,
  type WriteResult,
} from './types.js'
import { UpdateHub } from './update-hub.js'

/** NOTIFY channel; the payload is the envelope id. */
export const NOTIFY_CHANNEL = 'asya_envelope_updates'
/**
 * Every hot statement is a named prepared statement ({@link named}) planned once per connection
 * (a generic plan: each looks rows up by id). Measured on the gateway benchmark's machine, the
 * progress CTE cost the backend 3.5 ms of CPU per report unprepared, 2.4 ms of it planning; 0.8 ms
 * prepared with a generic plan (docs/gateway.md "Performance").
 */
const GENERIC_PLANS = '-c plan_cache_mode=force_generic_plan'

/** A query as a named prepared statement (node-postgres prepares it on first use per connection). */
function named<R extends pg.QueryResultRow = any>(pool: pg.Pool, name: string, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
  return pool.query<R>({ name, text, values })
}

/** pg_advisory_lock key of the migrations ("asya" in ASCII). */
const MIGRATION_LOCK = 0x61737961

const ENVELOPE_COLS = `id, parent_id, status, route_actors, route_current, payload, result, error, message, timeout_sec, deadline,
  progress_percent::float8 AS progress_percent, current_actor_idx, current_actor_name, actors_completed, total_actors, created_at, updated_at`
const UPDATE_COLS = `id, envelope_id, status, message, result, error, progress_percent::float8 AS progress_percent, actor, envelope_state, actors, current_actor_idx, timestamp`
const NOT_FINAL = `status NOT IN ('succeeded', 'failed')`
/**
 * Notification of an inserted update: the row itself as JSON when it fits NOTIFY's 8000-byte
 * payload (the listening replicas then need no read), else only the envelope id (they read it).
 */
const ROW_JSON = 'LATERAL (SELECT row_to_json(ins)::text AS j) x'
const NOTIFY_ROW = `pg_notify('${NOTIFY_CHANNEL}', CASE WHEN octet_length(x.j) < 7900 THEN x.j ELSE ins.envelope_id END)`

/** progressPercent (types.ts) in SQL over `s` (step), `total` and `prev_pct`: float8 like JS, Math.round's rounding. */
const STEP_PERCENT = `CROSS JOIN LATERAL (SELECT LEAST(100::float8, (GREATEST(0, s / 3) * 100 + (ARRAY[10, 50, 100])[s % 3 + 1])::float8 / NULLIF(total, 0)) * 100 AS x) a
  CROSS JOIN LATERAL (SELECT CASE WHEN total <= 0 THEN prev_pct ELSE (floor(a.x) + CASE WHEN a.x - floor(a.x) >= 0.5 THEN 1 ELSE 0 END) / 100 END AS raw) r`

/**
 * A progress report in one statement (one round trip, no explicit transaction): progressRows
 * (types.ts) in SQL, so the memory store and this one record the same history.
 * - `cur` locks the envelope row; FOR UPDATE waits for a concurrent writer and then reads the row
 *   it committed, so reports of one envelope are computed and appended one after the other and
 *   their update ids increase in commit order.
 * - `steps`: the steps after the last recorded one that the report implies (the rest of the
 *   previous reporter's states, or the start actor's when nothing from it on was recorded; the
 *   publisher's, `from_actor_idx`), then the reporting actor's states up to its own; nothing when
 *   the report is stale or final.
 * - `plan`: each step with its percentage (the JS formula and rounding, in float8 like JS, never
 *   below the previous value) and its message; `upd` moves the envelope to the last step; `ins`
 *   appends the rows in step order; `sent` notifies each.
 * - One answer row even when nothing was written: the locked status and percentage tell
 *   not found / final / stale apart.
 * $1 id, $2 the reported route (text[] or null), $3 the actor index, $4 its step (idx·3 + state),
 * $5 steps that carry a message (int[]), $6 their messages (text[]), $7 the publisher's index (int or null).
 */
const PROGRESS_SQL = `
WITH cur AS (
  SELECT status, route_current, progress_step, COALESCE(progress_percent, 0)::float8 AS pct, COALESCE(actors_completed, 0) AS done,
         CASE WHEN cardinality($2::text[]) > cardinality(route_actors) THEN $2::text[] ELSE route_actors END AS actors
  FROM envelopes WHERE id = $1 FOR UPDATE
), live AS (
  SELECT * FROM cur WHERE ${NOT_FINAL} AND $4::int > progress_step
), steps AS (
  SELECT g.s, l.pct AS prev_pct, cardinality(l.actors) AS total
  FROM live l
  CROSS JOIN LATERAL (SELECT l.progress_step >= l.route_current * 3 AS started, $3::int > l.route_current AS later,
                             COALESCE($7::int >= l.route_current AND $7::int < $3::int, false) AS publisher) c
  CROSS JOIN LATERAL (
    SELECT generate_series(
      CASE WHEN c.started THEN l.progress_step + 1 WHEN c.later THEN l.route_current * 3 ELSE 1 END,
      CASE WHEN c.started THEN LEAST(l.progress_step / 3 * 3 + 2, $4::int) WHEN c.later THEN l.route_current * 3 + 2 ELSE 0 END) AS s
    UNION
    SELECT generate_series(CASE WHEN c.publisher THEN GREATEST($7::int * 3, l.progress_step + 1) ELSE 1 END, CASE WHEN c.publisher THEN $7::int * 3 + 2 ELSE 0 END)
    UNION
    SELECT generate_series(CASE WHEN c.started THEN GREATEST($3::int * 3, l.progress_step + 1) ELSE $3::int * 3 END, $4::int)
  ) g
), plan AS (
  SELECT s, s / 3 AS i, s % 3 AS k, ($6::text[])[array_position($5::int[], s)] AS message, GREATEST(prev_pct, max(raw) OVER (ORDER BY s)) AS pct
  FROM steps ${STEP_PERCENT}
), fin AS (
  SELECT max(pct) AS pct, COALESCE(max(i + 1) FILTER (WHERE k = 2), 0) AS completed,
         (array_agg(message ORDER BY s DESC) FILTER (WHERE message IS NOT NULL))[1] AS message
  FROM plan HAVING count(*) > 0
), upd AS (
  UPDATE envelopes e SET status = 'running', route_actors = l.actors, total_actors = cardinality(l.actors), progress_percent = f.pct,
    progress_step = $4::int, current_actor_idx = $3::int, current_actor_name = COALESCE(l.actors[$3::int + 1], e.current_actor_name),
    message = COALESCE(f.message, e.message), actors_completed = GREATEST(l.done, f.completed)
  FROM live l, fin f WHERE e.id = $1
  RETURNING e.id, l.actors
), ins AS (
  INSERT INTO envelope_updates (envelope_id, status, message, progress_percent, actor, envelope_state, actors, current_actor_idx)
  SELECT upd.id, 'running', p.message, p.pct, upd.actors[p.i + 1], (ARRAY['received', 'processing', 'completed'])[p.k + 1], upd.actors, p.i
  FROM upd, plan p ORDER BY p.s
  RETURNING ${UPDATE_COLS}
), sent AS (
  SELECT ins.*, ${NOTIFY_ROW} FROM ins, ${ROW_JSON}
)
SELECT c.status AS cur_status, c.pct AS cur_pct, s.* FROM (VALUES (1)) one LEFT JOIN cur c ON true LEFT JOIN sent s ON true ORDER BY s.id`

/**
 * A final report in one statement, like PROGRESS_SQL: lock, then (succeeded) the last reporter's
 * remaining states (completionRows: it completed, since the envelope reached happy-end), the
 * final status, and the completion rows then the final row appended in that order and notified.
 * $1 id, $2 status, $3 result (jsonb), $4 error, $5 message, $6 actor index, $7 actor, $8 route.
 */
const FINISH_SQL = `
WITH cur AS (
  SELECT status, route_actors AS actors, progress_step, COALESCE(progress_percent, 0)::float8 AS pct
  FROM envelopes WHERE id = $1 FOR UPDATE
), live AS (
  SELECT * FROM cur WHERE ${NOT_FINAL}
), steps AS (
  SELECT g.s, l.pct AS prev_pct, cardinality(l.actors) AS total
  FROM live l CROSS JOIN LATERAL generate_series(l.progress_step + 1, l.progress_step / 3 * 3 + 2) AS g(s)
  WHERE $2::text = 'succeeded' AND l.progress_step >= 0
), comp AS (
  SELECT s, s / 3 AS i, s % 3 AS k, GREATEST(prev_pct, max(raw) OVER (ORDER BY s)) AS pct FROM steps ${STEP_PERCENT}
), upd AS (
  UPDATE envelopes e SET
    status = $2::text,
    result = COALESCE($3::jsonb, e.result),
    error = COALESCE($4::text, e.error),
    message = $5::text,
    progress_percent = CASE WHEN $2::text = 'succeeded' THEN 100 ELSE e.progress_percent END,
    actors_completed = CASE WHEN $2::text = 'succeeded' THEN e.total_actors ELSE e.actors_completed END,
    progress_step = COALESCE((SELECT max(s) FROM comp), e.progress_step),
    current_actor_idx = COALESCE($6::int, (SELECT max(i) FROM comp), e.current_actor_idx),
    current_actor_name = COALESCE($7::text, l.actors[(SELECT max(i) FROM comp) + 1], e.current_actor_name)
  FROM live l WHERE e.id = $1
  RETURNING e.id, l.actors
), ins AS (
  INSERT INTO envelope_updates (envelope_id, status, message, result, error, progress_percent, actor, envelope_state, actors, current_actor_idx)
  SELECT upd.id, w.status, w.message, w.result, w.error, w.pct, w.actor, w.state, w.actors, w.idx
  FROM upd CROSS JOIN LATERAL (
    SELECT 0 AS o, c.s, 'running' AS status, NULL::text AS message, NULL::jsonb AS result, NULL::text AS error, c.pct::float8 AS pct,
           upd.actors[c.i + 1] AS actor, (ARRAY['received', 'processing', 'completed'])[c.k + 1] AS state, upd.actors AS actors, c.i AS idx
    FROM comp c
    UNION ALL
    SELECT 1, 0, $2::text, $5::text, $3::jsonb, $4::text, CASE WHEN $2::text = 'succeeded' THEN 100::float8 END, $7::text, NULL, $8::text[], $6::int
  ) w
  ORDER BY w.o, w.s
  RETURNING ${UPDATE_COLS}
), sent AS (
  SELECT ins.*, ${NOTIFY_ROW} FROM ins, ${ROW_JSON}
)
SELECT c.status AS cur_status, s.* FROM (VALUES (1)) one LEFT JOIN cur c ON true LEFT JOIN sent s ON true ORDER BY s.id`

export interface PgStoreOptions {
  url: string
  /** Pool size (ASYA_DB_MAX_CONNS). @default 10 */
  maxConnections?: number
  logger: Logger
}

interface UpdateRow {
  id: string
  envelope_id: string
  status: EnvelopeStatus
  message: string | null
  result: unknown
  error: string | null
  progress_percent: number | null
  actor: string | null
  envelope_state: EnvelopeUpdate['envelope_state'] | null
  actors: string[] | null
  current_actor_idx: number | null
  timestamp: Date
}

export class PgEnvelopeStore implements EnvelopeStore {
  readonly kind = 'postgres' as const
  /** Durable writes (create, final) and reads. */
  readonly pool: pg.Pool
  /**
   * Best-effort writes (progress, pending → running, the sweep) on sessions with
   * synchronous_commit=off: they are visible, ordered and replicated like any other commit, but a
   * database crash can lose the last few hundred milliseconds of them. A created envelope or a
   * final status is never committed this way.
   */
  readonly fastPool: pg.Pool
  private listener: pg.Client | undefined
  private listening = false
  private closed = false
  private reconnectTimer: NodeJS.Timeout | undefined
  private readonly hub: UpdateHub
  private readonly log: Logger

  constructor(private readonly o: PgStoreOptions) {
    this.log = o.logger
    this.pool = new pg.Pool({ connectionString: o.url, max: o.maxConnections ?? 10, idleTimeoutMillis: 30_000, connectionTimeoutMillis: 10_000, options: GENERIC_PLANS })
    this.pool.on('error', (err) => this.log.warn({ err: errorMessage(err) }, 'idle PostgreSQL connection failed'))
    this.fastPool = new pg.Pool({
      connectionString: o.url,
      max: Math.max(2, Math.ceil((o.maxConnections ?? 10) / 2)),
      idleTimeoutMillis: 30_000,
      connectionTimeoutMillis: 10_000,
      options: `-c synchronous_commit=off ${GENERIC_PLANS}`,
    })
    this.fastPool.on('error', (err) => this.log.warn({ err: errorMessage(err) }, 'idle PostgreSQL connection failed'))
    this.hub = new UpdateHub(
      (id, after) => this.updatesSince(id, after),
      (err, id) => this.log.warn({ envelope_id: id, err: errorMessage(err) }, 'reading live updates failed; retrying'),
    )
  }

  async start(): Promise<void> {
    try {
      await this.migrate()
    } catch (err) {
      if (err instanceof AsyaError) throw err
      throw new errors.ASYA_ERR_STORE(`PostgreSQL unreachable: ${errorMessage(err)}`, { cause: err })
    }
    await this.listen()
  }

  /** Applies pending migrations under an advisory lock (replicas starting together wait for each other). */
  async migrate(): Promise<number[]> {
    const client = await this.pool.connect()
    const applied: number[] = []
    try {
      await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK])
      try {
        await client.query(`CREATE TABLE IF NOT EXISTS asya_gateway_migrations (
          version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW())`)
        const done = new Set((await client.query<{ version: number }>('SELECT version FROM asya_gateway_migrations')).rows.map((r) => r.version))
        for (const m of MIGRATIONS) {
          if (done.has(m.version)) continue
          try {
            await client.query('BEGIN')
            await client.query(m.sql)
            await client.query('INSERT INTO asya_gateway_migrations (version, name) VALUES ($1, $2)', [m.version, m.name])
            await client.query('COMMIT')
            applied.push(m.version)
            this.log.info({ version: m.version, name: m.name }, 'store migration applied')
          } catch (err) {
            await client.query('ROLLBACK').catch(() => {})
            throw new errors.ASYA_ERR_STORE_MIGRATION(`migration ${m.version} (${m.name}) failed: ${errorMessage(err)}`, { cause: err, details: { version: m.version } })
          }
        }
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => {})
      }
    } finally {
      client.release()
    }
    return applied
  }

  private async listen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.o.url })
    client.on('notification', (n) => {
      if (n.channel !== NOTIFY_CHANNEL || !n.payload) return
      if (n.payload.startsWith('{')) {
        try {
          const row = JSON.parse(n.payload) as UpdateRow
          this.hub.deliver(row.envelope_id, toUpdate(row))
          return
        } catch {
          // fall through: an id-only signal is always safe
        }
      }
      this.hub.signal(n.payload)
    })
    const lost = (err?: unknown): void => {
      if (this.listener !== client) return
      this.listener = undefined
      this.listening = false
      client.end().catch(() => {})
      if (this.closed) return
      this.log.warn({ err: err === undefined ? 'connection ended' : errorMessage(err) }, 'PostgreSQL LISTEN connection lost; reconnecting')
      this.scheduleListen()
    }
    client.on('error', lost)
    client.on('end', () => lost())
    this.listener = client
    await client.connect()
    await client.query(`LISTEN ${NOTIFY_CHANNEL}`)
    this.listening = true
    // Anything committed while we were not listening is read now.
    this.hub.signalAll()
  }

  private scheduleListen(delay = 1000): void {
    if (this.closed || this.reconnectTimer) return
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined
      this.listen().catch((err: unknown) => {
        this.listener?.end().catch(() => {})
        this.listener = undefined
        this.log.warn({ err: errorMessage(err) }, 'PostgreSQL LISTEN reconnect failed')
        this.scheduleListen(Math.min(delay * 2, 30_000))
      })
    }, delay)
    this.reconnectTimer.unref()
  }

  async create(e0: NewEnvelope): Promise<{ created: boolean; record: EnvelopeRecord }> {
    const e = { ...e0, actors: pgTexts(e0.actors) as string[] }
    const r = await named(this.pool, 'asya_create',
      `INSERT INTO envelopes (id, parent_id, status, route_actors, route_current, payload, timeout_sec, deadline, progress_percent, total_actors, actors_completed)
       VALUES ($1, $2, 'pending', $3::text[], $4, $5::jsonb, $6::int,
               COALESCE($7::timestamptz, CASE WHEN $6::int > 0 THEN now() + make_interval(secs => $6::int) END), 0, cardinality($3::text[]), 0)
       ON CONFLICT (id) DO NOTHING
       RETURNING ${ENVELOPE_COLS}`,
      [e.id, e.parentId ?? null, e.actors, e.current, pgJson(e.payload ?? null), e.timeoutSec ?? null, e.deadline ?? null],
    )
    if (r.rows[0]) return { created: true, record: toRecord(r.rows[0]) }
    const existing = await this.get(e.id)
    if (!existing) throw new errors.ASYA_ERR_STORE(`envelope ${e.id} neither created nor found`)
    return { created: false, record: existing }
  }

  async get(id: string): Promise<EnvelopeRecord | undefined> {
    const r = await named(this.pool, 'asya_get', `SELECT ${ENVELOPE_COLS} FROM envelopes WHERE id = $1`, [id])
    return r.rows[0] ? toRecord(r.rows[0]) : undefined
  }

  async updatesSince(id: string, afterSeq: number, limit = 10_000): Promise<SequencedUpdate[]> {
    const r = await named<UpdateRow>(this.pool, 'asya_updates_since', `SELECT ${UPDATE_COLS} FROM envelope_updates WHERE envelope_id = $1 AND id > $2 ORDER BY id LIMIT $3`, [id, afterSeq, limit])
    return r.rows.map(toUpdate)
  }

  async markRunning(id: string, message0: string): Promise<WriteResult> {
    const message = pgText(message0)
    const r = await named<UpdateRow>(this.fastPool, 'asya_mark_running',
      `WITH upd AS (
         UPDATE envelopes SET status = 'running', message = $2::text WHERE id = $1 AND status = 'pending' RETURNING id
       ), ins AS (
         INSERT INTO envelope_updates (envelope_id, status, message) SELECT id, 'running', $2::text FROM upd RETURNING ${UPDATE_COLS}
       )
       SELECT ins.*, ${NOTIFY_ROW} FROM ins, ${ROW_JSON}`,
      [id, message],
    )
    if (r.rows[0]) return { outcome: 'applied', update: toUpdate(r.rows[0]) }
    const s = await this.statusOf(id)
    if (s === undefined) return { outcome: 'not_found' }
    if (s === 'succeeded' || s === 'failed') return { outcome: 'final', status: s }
    return { outcome: 'unchanged' }
  }

  async progress(id: string, p: ProgressReport): Promise<WriteResult> {
    const idx = p.currentActorIdx
    const step = progressStep(idx, p.state)
    // Messages by step: the reported state's, and those of earlier states folded into it.
    const steps: number[] = []
    const messages: string[] = []
    for (const state of ACTOR_STATES) {
      const m = state === p.state ? p.message : p.earlierMessages?.[state]
      if (m === undefined) continue
      steps.push(progressStep(idx, state))
      messages.push(pgText(m))
    }
    const r = await named<UpdateRow & { cur_status: EnvelopeStatus | null; cur_pct: number | null }>(this.fastPool, 'asya_progress', PROGRESS_SQL, [id, pgTexts(p.actors) ?? null, idx, step, steps, messages, p.fromIdx ?? null])
    const first = r.rows[0]
    if (!first?.cur_status) return { outcome: 'not_found' }
    if (first.cur_status === 'succeeded' || first.cur_status === 'failed') return { outcome: 'final', status: first.cur_status }
    const last = r.rows[r.rows.length - 1] as UpdateRow
    // No row written: a stale report (a later step is recorded already).
    if (last.id === null) return { outcome: 'unchanged', progressPercent: first.cur_pct ?? 0 }
    return { outcome: 'applied', update: toUpdate(last) }
  }

  async finish(id: string, f0: FinalReport): Promise<WriteResult> {
    const f: FinalReport = {
      ...f0,
      message: pgText(f0.message),
      ...(f0.error !== undefined ? { error: pgText(f0.error) } : {}),
      ...(f0.actor !== undefined ? { actor: pgText(f0.actor) } : {}),
      ...(f0.actors !== undefined ? { actors: pgTexts(f0.actors) as string[] } : {}),
    }
    const r = await named<UpdateRow & { cur_status: EnvelopeStatus | null }>(this.pool, 'asya_finish', FINISH_SQL, [
      id,
      f.status,
      f.result === undefined ? null : pgJson(f.result),
      f.error ?? null,
      f.message,
      f.currentActorIdx ?? null,
      f.actor ?? null,
      f.actors ?? null,
    ])
    const first = r.rows[0]
    if (!first?.cur_status) return { outcome: 'not_found' }
    if (first.cur_status === 'succeeded' || first.cur_status === 'failed') return { outcome: 'final', status: first.cur_status }
    const last = r.rows[r.rows.length - 1] as UpdateRow
    if (last.id === null) throw new errors.ASYA_ERR_STORE(`final update of locked envelope ${id} matched no row`)
    return { outcome: 'applied', update: toUpdate(last) }
  }

  async expireDue(limit = 500): Promise<number> {
    const r = await named(this.fastPool, 'asya_expire_due',
      `WITH due AS (
         SELECT id FROM envelopes WHERE deadline IS NOT NULL AND deadline <= now() AND status IN ('pending', 'running')
         ORDER BY deadline LIMIT $1 FOR UPDATE SKIP LOCKED
       ), upd AS (
         UPDATE envelopes e SET status = 'failed', error = 'envelope timed out', message = 'Envelope timed out'
         FROM due WHERE e.id = due.id RETURNING e.id
       ), ins AS (
         INSERT INTO envelope_updates (envelope_id, status, message, error)
         SELECT id, 'failed', 'Envelope timed out', 'envelope timed out' FROM upd RETURNING envelope_id
       )
       SELECT pg_notify('${NOTIFY_CHANNEL}', envelope_id) FROM ins`,
      [limit],
    )
    return r.rowCount ?? 0
  }

  async deleteFinalBefore(before: Date, limit = 1000): Promise<number> {
    const r = await this.pool.query(
      `DELETE FROM envelopes WHERE id IN (
         SELECT id FROM envelopes WHERE status IN ('succeeded', 'failed') AND updated_at < $1 LIMIT $2)`,
      [before, limit],
    )
    return r.rowCount ?? 0
  }

  async isActive(id: string): Promise<boolean> {
    const r = await named<{ active: boolean }>(this.pool, 'asya_is_active', `SELECT (${NOT_FINAL} AND (deadline IS NULL OR deadline > now())) AS active FROM envelopes WHERE id = $1`, [id])
    return r.rows[0]?.active ?? false
  }

  subscribe(id: string, listener: UpdateListener): StoreSubscription {
    return this.hub.subscribe(id, listener)
  }

  isHealthy(): boolean {
    return this.listening
  }

  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.reconnectTimer)
    const l = this.listener
    this.listener = undefined
    this.listening = false
    await l?.end().catch(() => {})
    await this.pool.end().catch(() => {})
    await this.fastPool.end().catch(() => {})
  }

  private async statusOf(id: string): Promise<EnvelopeStatus | undefined> {
    const r = await named<{ status: EnvelopeStatus }>(this.pool, 'asya_status_of', 'SELECT status FROM envelopes WHERE id = $1', [id])
    return r.rows[0]?.status
  }

}

function iso(d: unknown): string {
  if (d instanceof Date) return d.toISOString()
  const t = Date.parse(String(d))
  return Number.isNaN(t) ? String(d) : new Date(t).toISOString()
}

function toRecord(row: Record<string, unknown>): EnvelopeRecord {
  const rec: EnvelopeRecord = {
    id: row.id as string,
    status: row.status as EnvelopeStatus,
    route: { actors: (row.route_actors as string[]) ?? [], current: (row.route_current as number) ?? 0 },
    payload: (row.payload ?? null) as EnvelopeRecord['payload'],
    progress_percent: (row.progress_percent as number | null) ?? 0,
    current_actor_idx: (row.current_actor_idx as number | null) ?? 0,
    actors_completed: (row.actors_completed as number | null) ?? 0,
    total_actors: (row.total_actors as number | null) ?? 0,
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
  }
  if (row.parent_id !== null && row.parent_id !== undefined) rec.parent_id = row.parent_id as string
  if (row.result !== null && row.result !== undefined) rec.result = row.result as EnvelopeRecord['result']
  if (row.error !== null && row.error !== undefined) rec.error = row.error as string
  if (row.message !== null && row.message !== undefined) rec.message = row.message as string
  if (row.timeout_sec !== null && row.timeout_sec !== undefined) rec.timeout_seconds = row.timeout_sec as number
  if (row.deadline !== null && row.deadline !== undefined) rec.deadline = iso(row.deadline)
  if (row.current_actor_name !== null && row.current_actor_name !== undefined) rec.current_actor_name = row.current_actor_name as string
  return rec
}

function toUpdate(row: UpdateRow): SequencedUpdate {
  const u: EnvelopeUpdate = { id: row.envelope_id, status: row.status, timestamp: iso(row.timestamp) }
  if (row.message !== null && row.message !== '') u.message = row.message
  if (row.result !== null && row.result !== undefined) u.result = row.result as EnvelopeUpdate['result']
  if (row.error !== null && row.error !== '') u.error = row.error
  if (row.progress_percent !== null) u.progress_percent = row.progress_percent
  if (row.actor !== null) u.actor = row.actor
  if (row.actors !== null) u.actors = row.actors
  if (row.current_actor_idx !== null) u.current_actor_idx = row.current_actor_idx
  if (row.envelope_state !== null) u.envelope_state = row.envelope_state
  return { seq: Number(row.id), update: u }
}

/**
 * PostgreSQL's text and jsonb cannot hold U+0000 (the server refuses the whole statement, which
 * would turn a tool call or a final report carrying one into a 503): the store keeps U+FFFD in its
 * place. Only the stored copy changes; the envelope on the queue keeps the caller's payload.
 */
export function pgText<T extends string | undefined>(s: T): T {
  return (s === undefined || !s.includes('\u0000') ? s : s.replace(/\u0000/g, '\uFFFD')) as T
}

function pgTexts(a: string[] | undefined): string[] | undefined {
  return a?.map((x) => pgText(x))
}

/** JSON for a jsonb parameter: JSON.stringify writes U+0000 as the escape `\u0000`, which jsonb refuses. */
export function pgJson(v: unknown): string {
  const json = JSON.stringify(v) ?? 'null'
  if (!json.includes('u0000')) return json
  // An escape only where the backslash run before `u0000` is odd (`\\u0000` is a literal backslash).
  return json.replace(/(\\+)u0000/g, (m: string, bs: string) => (bs.length % 2 === 1 ? `${bs.slice(0, -1)}\\ufffd` : m))
}
