/**
 * CA + serving certificate with the `openssl` CLI (node:crypto cannot sign X.509). Used by the
 * self-managed CA mode, by tests and by the benchmark; certs/gen-certs.sh is the same recipe for
 * operators. Keys are ECDSA P-256: fast handshakes, accepted by every API server.
 */
import { execFile } from 'node:child_process'
import { mkdir, readFile, writeFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { errorMessage, errors } from '../src/errors.js'

const run = promisify(execFile)

export interface GeneratedCerts {
  caCert: string
  caKey: string
  cert: string
  key: string
  /** base64 of caCert: the MutatingWebhookConfiguration's clientConfig.caBundle. */
  caBundle: string
  /** Paths of the files written (dir/ca.crt, ca.key, tls.crt, tls.key). */
  files: { caCert: string; caKey: string; cert: string; key: string }
}

export interface CertRequest {
  dir: string
  service: string
  namespace: string
  /** Extra subjectAltNames (`DNS:localhost`, `IP:127.0.0.1`). */
  extraNames?: string[]
  days?: number
  /** Reuse this CA instead of making one (rotation of the serving cert only). */
  ca?: { cert: string; key: string }
}

export function serviceNames(service: string, namespace: string): string[] {
  return [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`]
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args)
  } catch (err) {
    throw new errors.ASYA_ERR_TLS(`openssl ${args[0]} failed: ${errorMessage(err)}`, { cause: err })
  }
}

export async function generateCerts(r: CertRequest): Promise<GeneratedCerts> {
  await mkdir(r.dir, { recursive: true })
  const f = { caCert: join(r.dir, 'ca.crt'), caKey: join(r.dir, 'ca.key'), cert: join(r.dir, 'tls.crt'), key: join(r.dir, 'tls.key') }
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  if (r.ca) {
    await writeFile(f.caCert, r.ca.cert)
    await writeFile(f.caKey, r.ca.key, { mode: 0o600 })
  } else {
    await openssl(['req', '-x509', ...ec, '-keyout', f.caKey, '-out', f.caCert, '-days', String((r.days ?? 365) * 10), '-subj', `/CN=asya-webhook-ca-${r.namespace}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  }
  const csr = join(r.dir, 'tls.csr')
  const ext = join(r.dir, 'tls.ext')
  const cn = `${r.service}.${r.namespace}.svc`
  const san = [...serviceNames(r.service, r.namespace).map((n) => `DNS:${n}`), ...(r.extraNames ?? [])].join(',')
  await writeFile(ext, `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`)
  await openssl(['req', ...ec, '-keyout', f.key, '-out', csr, '-subj', `/CN=${cn}`])
  const serial = `0x${[...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('')}`
  await openssl(['x509', '-req', '-in', csr, '-CA', f.caCert, '-CAkey', f.caKey, '-set_serial', serial, '-out', f.cert, '-days', String(r.days ?? 365), '-extfile', ext])
  await rm(csr, { force: true })
  await rm(ext, { force: true })
  const [caCert, caKey, cert, key] = await Promise.all([readFile(f.caCert, 'utf8'), readFile(f.caKey, 'utf8'), readFile(f.cert, 'utf8'), readFile(f.key, 'utf8')])
  return { caCert, caKey, cert, key, caBundle: Buffer.from(caCert).toString('base64'), files: f }
}
