/**
 * Schema of the envelope store: upstream asya-gateway's tables and columns (its sqitch changes
 * 001–004: `envelopes`, `envelope_updates`, lowercase statuses), written so they also apply over
 * a database upstream's sqitch already migrated (IF NOT EXISTS everywhere), then ours (005+).
 * Applied by the gateway at start, in order, each in its own transaction, under an advisory lock
 * so replicas can start together; applied versions are recorded in `asya_gateway_migrations`.
 */
export interface Migration {
  version: number
  name: string
  sql: string
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial_schema',
    sql: `
CREATE TABLE IF NOT EXISTS envelopes (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'unknown')),
    route_actors TEXT[] NOT NULL,
    route_current INTEGER NOT NULL DEFAULT 0,
    payload JSONB,
    result JSONB,
    error TEXT,
    timeout_sec INTEGER,
    deadline TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_envelopes_status ON envelopes(status);
CREATE INDEX IF NOT EXISTS idx_envelopes_created_at ON envelopes(created_at DESC);
CREATE INDEX IF NOT EXISTS idx_envelopes_updated_at ON envelopes(updated_at DESC);
CREATE INDEX IF NOT EXISTS idx_envelopes_deadline ON envelopes(deadline) WHERE deadline IS NOT NULL;
CREATE TABLE IF NOT EXISTS envelope_updates (
    id BIGSERIAL PRIMARY KEY,
    envelope_id TEXT NOT NULL REFERENCES envelopes(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    message TEXT,
    result JSONB,
    error TEXT,
    timestamp TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_envelope_updates_envelope_id ON envelope_updates(envelope_id, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_envelope_updates_timestamp ON envelope_updates(timestamp DESC);
CREATE OR REPLACE FUNCTION update_updated_at_column() RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS update_envelopes_updated_at ON envelopes;
CREATE TRIGGER update_envelopes_updated_at BEFORE UPDATE ON envelopes FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
`,
  },
  {
    version: 2,
    name: 'add_progress_tracking',
    sql: `
ALTER TABLE envelopes
    ADD COLUMN IF NOT EXISTS progress_percent DECIMAL(5,2) DEFAULT 0.0 CHECK (progress_percent >= 0 AND progress_percent <= 100),
    ADD COLUMN IF NOT EXISTS current_actor_idx INTEGER DEFAULT 0,
    ADD COLUMN IF NOT EXISTS current_actor_name TEXT,
    ADD COLUMN IF NOT EXISTS message TEXT,
    ADD COLUMN IF NOT EXISTS actors_completed INTEGER DEFAULT 0 CHECK (actors_completed >= 0),
    ADD COLUMN IF NOT EXISTS total_actors INTEGER DEFAULT 0 CHECK (total_actors >= 0);
ALTER TABLE envelope_updates
    ADD COLUMN IF NOT EXISTS progress_percent DECIMAL(5,2),
    ADD COLUMN IF NOT EXISTS actor TEXT,
    ADD COLUMN IF NOT EXISTS envelope_state TEXT CHECK (envelope_state IS NULL OR envelope_state IN ('received', 'processing', 'completed'));
CREATE INDEX IF NOT EXISTS idx_envelopes_progress ON envelopes(progress_percent) WHERE progress_percent < 100;
`,
  },
  {
    version: 3,
    name: 'add_parent_id',
    sql: `
ALTER TABLE envelopes ADD COLUMN IF NOT EXISTS parent_id TEXT;
CREATE INDEX IF NOT EXISTS idx_envelopes_parent_id ON envelopes(parent_id) WHERE parent_id IS NOT NULL;
`,
  },
  {
    version: 4,
    name: 'lowercase_status_values',
    sql: `
UPDATE envelopes SET status = lower(status) WHERE status IN ('Pending', 'Running', 'Succeeded', 'Failed', 'Unknown');
UPDATE envelope_updates SET status = lower(status) WHERE status IN ('Pending', 'Running', 'Succeeded', 'Failed', 'Unknown');
ALTER TABLE envelopes DROP CONSTRAINT IF EXISTS envelopes_status_check;
ALTER TABLE envelopes ADD CONSTRAINT envelopes_status_check CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'unknown'));
`,
  },
  {
    // Ours. Final is final in the database itself: any UPDATE of a final row is skipped, whoever
    // issues it (a late progress report, a timeout, an old upstream replica during a migration).
    // Updates carry the route and index so history and live events look the same, and are read
    // by (envelope_id, id) for gap-free catch-up. The sweep reads due deadlines of live envelopes.
    version: 5,
    name: 'final_is_final_and_stream_index',
    sql: `
CREATE OR REPLACE FUNCTION asya_keep_final_status() RETURNS TRIGGER AS $$
BEGIN
    IF OLD.status IN ('succeeded', 'failed') THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS asya_envelopes_final_is_final ON envelopes;
CREATE TRIGGER asya_envelopes_final_is_final BEFORE UPDATE ON envelopes FOR EACH ROW EXECUTE FUNCTION asya_keep_final_status();
ALTER TABLE envelope_updates
    ADD COLUMN IF NOT EXISTS actors TEXT[],
    ADD COLUMN IF NOT EXISTS current_actor_idx INTEGER;
CREATE INDEX IF NOT EXISTS idx_envelope_updates_envelope_seq ON envelope_updates(envelope_id, id);
CREATE INDEX IF NOT EXISTS idx_envelopes_live_deadline ON envelopes(deadline) WHERE deadline IS NOT NULL AND status IN ('pending', 'running');
`,
  },
  {
    // Ours: the last progress step recorded (actor index·3 + state), so reports that arrive late
    // from another sidecar are recognised as stale and the implied states are recorded in order.
    version: 6,
    name: 'progress_step',
    sql: `ALTER TABLE envelopes ADD COLUMN IF NOT EXISTS progress_step INTEGER NOT NULL DEFAULT -1;`,
  },
]
