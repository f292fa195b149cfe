// Test set-up (run by scripts/run-tests.mjs before tap): the gateway tests need PostgreSQL on
// 127.0.0.1:5432 accepting the `postgres` user without a password from 127.0.0.1 (each test file
// creates and drops its own database). Starts the Debian cluster when nothing answers, and on a
// cluster this set-up started (or one that refuses the test user) adds a trust rule for 127.0.0.1
// to its pg_hba.conf. Installing PostgreSQL is .ci/run's job. ASYA_TEST_DATABASE_URL points the
// tests at another server instead.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { has, portOpen, sleep } from './service-probe.mjs'


function clusters() {
  if (!existsSync('/etc/postgresql')) return []
  return readdirSync('/etc/postgresql').flatMap((v) =>
    existsSync(`/etc/postgresql/${v}`) ? readdirSync(`/etc/postgresql/${v}`).filter((c) => existsSync(`/etc/postgresql/${v}/${c}/pg_hba.conf`)).map((c) => ({ version: v, name: c })) : [],
  )
}

function trustLocalhost(c) {
  const file = `/etc/postgresql/${c.version}/${c.name}/pg_hba.conf`
  const text = readFileSync(file, 'utf8')
  if (/^host\s+all\s+all\s+127\.0\.0\.1\/32\s+trust/m.test(text)) return false
  writeFileSync(file, `# added by asya's test set-up (scripts/ensure-postgres.mjs)\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n${text}`)
  return true
}

async function canLogin() {
  try {
    const { default: pg } = await import('pg')
    const c = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres', connectionTimeoutMillis: 3000 })
    await c.connect()
    await c.end()
    return true
  } catch {
    return false
  }
}

export async function ensurePostgres() {
  if (process.env.ASYA_TEST_DATABASE_URL) return
  const cs = clusters()
  if (!(await portOpen(5432))) {
    if (cs.length === 0 || !has('pg_ctlcluster')) {
      console.error('# no PostgreSQL on 127.0.0.1:5432 and no cluster to start (apt-get install -y postgresql, or run .ci/run)')
      return
    }
    const c = cs[0]
    trustLocalhost(c)
    console.error(`# starting PostgreSQL ${c.version}/${c.name}`)
    spawnSync('pg_ctlcluster', ['--skip-systemctl-redirect', c.version, c.name, 'start'], { stdio: 'ignore', timeout: 120_000 })
    for (let i = 0; i < 60 && !(await portOpen(5432)); i++) await sleep(1000)
    if (!(await portOpen(5432))) {
      console.error('# PostgreSQL did not come up on 127.0.0.1:5432')
      return
    }
  }
  if (!(await canLogin()) && cs.length > 0) {
    // A fresh Debian cluster asks for passwords over TCP: let the test user in from 127.0.0.1.
    for (const c of cs) {
      if (trustLocalhost(c)) spawnSync('pg_ctlcluster', ['--skip-systemctl-redirect', c.version, c.name, 'reload'], { stdio: 'ignore', timeout: 60_000 })
    }
    for (let i = 0; i < 10 && !(await canLogin()); i++) await sleep(500)
  }
  if (!(await canLogin())) console.error('# warning: cannot log in to PostgreSQL as postgres@127.0.0.1 without a password; gateway tests will fail')
}
