/** Wraps a store so every async operation reports its latency (asya_gateway_store_duration_seconds). */
import type { EnvelopeStore, StoreTimer } from './store.js'

const TIMED = new Set(['create', 'get', 'updatesSince', 'markRunning', 'progress', 'finish', 'expireDue', 'deleteFinalBefore', 'isActive'])

export function timedStore(store: EnvelopeStore, timer: StoreTimer): EnvelopeStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown
      if (typeof prop !== 'string' || typeof v !== 'function') return v
      const fn = v as (...a: unknown[]) => unknown
      if (!TIMED.has(prop)) return fn.bind(target)
      return async (...args: unknown[]) => {
        const start = process.hrtime.bigint()
        try {
          const r = await fn.apply(target, args)
          timer(prop, Number(process.hrtime.bigint() - start) / 1e9, true)
          return r
        } catch (err) {
          timer(prop, Number(process.hrtime.bigint() - start) / 1e9, false)
          throw err
        }
      }
    },
  })
}
