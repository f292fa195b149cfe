import t from 'tap'
import { readFileSync } from 'node:fs'
import { ERROR_CATALOG, AsyaError, isAsyaError, errorMessage } from '../../src/errors.js'

t.test('every catalog code is documented in docs/errors.md', async (t) => {
  const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8')
  for (const code of Object.keys(ERROR_CATALOG)) t.match(doc, `| \`${code}\` |`, code)
})

t.test('AsyaError carries code, details and cause', async (t) => {
  const cause = new Error('root')
  const err = new AsyaError('ASYA_ERR_TLS', 'no cert', { cause, details: { path: '/x' } })
  t.ok(isAsyaError(err))
  t.ok(isAsyaError(err, 'ASYA_ERR_TLS'))
  t.notOk(isAsyaError(err, 'ASYA_ERR_K8S_API'))
  t.notOk(isAsyaError(new Error('x')))
  t.equal(err.cause, cause)
  t.same(err.toJSON(), { code: 'ASYA_ERR_TLS', message: 'no cert', details: { path: '/x' } })
  t.equal(errorMessage('s'), 's')
  t.equal(errorMessage({ a: 1 }), '{"a":1}')
  t.equal(errorMessage(err), 'no cert')
})
