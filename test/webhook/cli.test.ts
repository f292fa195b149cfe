import t from 'tap'
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { injectPod } from '../../webhook/inject.js'
import { readWebhookConfig } from '../../src/system/config.js'
import { tmp } from './helpers.js'

const dir = tmp('asya-cli-')
const env = { ...process.env, ASYA_SIDECAR_IMAGE: 'registry.example/asya-sidecar:9', ASYA_RABBITMQ_HOST: 'rabbitmq.asya-system.svc', ASYA_RABBITMQ_CREDENTIALS_SECRET: 'asya-rabbitmq' }
const manifest = `# the text pipeline
apiVersion: apps/v1
kind: Deployment
metadata:
  name: cleaner
  namespace: team-a
spec:
  selector:
    matchLabels: {app: cleaner}
  template:
    metadata:
      labels:
        app: cleaner
        asya.sh/actor: cleaner # opt in
      annotations:
        asya.sh/handler: cleaner.clean
    spec:
      containers:
        - name: handler
          image: python:3.12-slim
---
apiVersion: v1
kind: Service
metadata:
  name: not-touched
spec:
  ports: [{port: 80}]
`

function asya(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['src/cli/bin.mjs', ...args], { env, input, encoding: 'utf8' })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

t.test('asya inject -f prints the manifest with the same injection as the webhook', async (t) => {
  const file = join(dir, 'deploy.yaml')
  writeFileSync(file, manifest)
  const r = asya(['inject', '-f', file])
  t.equal(r.status, 0, r.stderr)
  const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as Record<string, any>)
  t.equal(docs.length, 2, 'every document kept')
  t.same(docs[1], parseAllDocuments(manifest)[1]?.toJS(), 'other kinds untouched')
  const original = parseAllDocuments(manifest)[0]?.toJS() as Record<string, any>
  const expected = injectPod({ metadata: original.spec.template.metadata, spec: original.spec.template.spec }, { config: readWebhookConfig(env), namespace: 'team-a' })
  t.equal(expected.kind, 'injected')
  if (expected.kind === 'injected') t.same(docs[0]?.spec.template, expected.pod, 'template equals injectPod output')
  t.match(r.stdout, /# the text pipeline/, 'comments survive')
  t.match(r.stdout, /# opt in/)
  t.match(r.stdout, /secretKeyRef/, 'credentials by reference')

  const again = join(dir, 'again.yaml')
  writeFileSync(again, r.stdout)
  const second = asya(['inject', '-f', again])
  t.equal(second.status, 0)
  t.equal(second.stdout, r.stdout, 'injecting the output again changes nothing')
})

t.test('stdin, denial and usage errors', async (t) => {
  const fromStdin = asya(['inject', '-f', '-'], manifest)
  t.equal(fromStdin.status, 0)
  t.match(fromStdin.stdout, /asya-sidecar/)
  const bad = asya(['inject', '-f', '-'], manifest.replace('asya.sh/handler: cleaner.clean', 'asya.sh/timeout: "never"'))
  t.equal(bad.status, 1, 'a workload the webhook would deny fails the command')
  t.match(bad.stderr, /Deployment\/cleaner: asya: annotation asya\.sh\/timeout="never" is invalid/)
  t.equal(asya(['inject']).status, 2)
  t.equal(asya(['frobnicate']).status, 2)
  const missing = asya(['inject', '-f', join(dir, 'nope.yaml')])
  t.equal(missing.status, 2)
  t.match(missing.stderr, /nope\.yaml/)
})
