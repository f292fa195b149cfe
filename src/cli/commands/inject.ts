import { readFileSync } from 'node:fs'
import type { Command } from 'commander'
import { errorMessage } from '../../errors.js'
import { readWebhookConfig } from '../../system/config.js'
import { injectManifest } from '../inject-manifest.js'
import { CliError, EXIT, type CliIo } from '../io.js'
import { withExamples } from '../help.js'

export function registerInject(program: Command, io: CliIo): void {
  const cmd = program
    .command('inject')
    .summary('print a manifest with the Asya sidecar injected, as the webhook would')
    .description(
      'Prints the manifest with the Asya sidecar injected into every pod template labelled ' +
        'asya.sh/actor, exactly as the admission webhook would. Comments and other kinds are kept.\n\n' +
        'Configure it with the system env (ASYA_SIDECAR_IMAGE, ASYA_TRANSPORT, ASYA_RABBITMQ_HOST, ...).\n\n' +
        'Exits 1 when a workload would be denied (the message names the annotation).',
    )
    .requiredOption('-f, --filename <file>', 'manifest to read, "-" for stdin')
    .option('-n, --namespace <ns>', 'namespace of objects that name none', 'default')
    .action((opts: { filename: string; namespace: string }) => {
      let text: string
      let config
      try {
        text = opts.filename === '-' ? io.readStdin() : readFileSync(opts.filename, 'utf8')
        config = readWebhookConfig(io.env)
      } catch (err) {
        throw new CliError(errorMessage(err), EXIT.usage)
      }
      const r = injectManifest(text, config, opts.namespace)
      for (const w of r.warnings) io.stderr(`warning: ${w}\n`)
      if (r.errors.length > 0) throw new CliError(r.errors.join('\nerror: '), EXIT.failed)
      io.stdout(r.output)
    })
  withExamples(cmd, [
    ['asya inject -f deployment.yaml', 'inject one file'],
    ['kustomize build overlays/prod | asya inject -f - -n team-a', 'inject a rendered overlay from stdin'],
    ['asya inject -f deploy.yaml | kubectl diff -f -', 'see what admission would change'],
  ])
}
