/**
 * A real OTLP/HTTP receiver (JSON protocol) for tracing tests: accepts `POST /v1/traces` as an
 * OpenTelemetry Collector does and decodes what the exporter really sends
 * (ExportTraceServiceRequest: resourceSpans → scopeSpans → spans) into flat spans.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

type AnyValue = { stringValue?: string; intValue?: number | string; boolValue?: boolean; doubleValue?: number; arrayValue?: { values?: AnyValue[] } }
interface KeyValue {
  key: string
  value: AnyValue
}

export interface ReceivedSpan {
  traceId: string
  spanId: string
  /** '' for a root span. */
  parentSpanId: string
  name: string
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number
  attributes: Record<string, string | number | boolean | unknown[]>
  /** 0 unset, 1 ok, 2 error. */
  status: { code: number; message?: string }
  service: string
  startNs: bigint
  endNs: bigint
}

export interface OtlpReceiver {
  /** Base URL, for OTEL_EXPORTER_OTLP_ENDPOINT. */
  url: string
  spans: ReceivedSpan[]
  /** Export requests received (every one answered 200). */
  requests: number
  /** Resolves once `filter` matches `n` spans. */
  waitFor(n: number, filter?: (s: ReceivedSpan) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>
  close(): Promise<void>
}

function value(v: AnyValue): string | number | boolean | unknown[] {
  if (v.stringValue !== undefined) return v.stringValue
  if (v.intValue !== undefined) return Number(v.intValue)
  if (v.doubleValue !== undefined) return v.doubleValue
  if (v.boolValue !== undefined) return v.boolValue
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(value)
  return ''
}

function attrs(list: KeyValue[] | undefined): Record<string, string | number | boolean | unknown[]> {
  const out: Record<string, string | number | boolean | unknown[]> = {}
  for (const kv of list ?? []) out[kv.key] = value(kv.value)
  return out
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = []
  let requests = 0
  const waiters = new Set<() => void>()
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces' || !String(req.headers['content-type']).includes('application/json')) {
        res.writeHead(415).end()
        return
      }
      requests++
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        resourceSpans?: Array<{ resource?: { attributes?: KeyValue[] }; scopeSpans?: Array<{ spans?: Array<Record<string, unknown>> }> }>
      }
      for (const rs of body.resourceSpans ?? []) {
        const service = String(attrs(rs.resource?.attributes)['service.name'] ?? '')
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            spans.push({
              traceId: String(s.traceId),
              spanId: String(s.spanId),
              parentSpanId: String(s.parentSpanId ?? ''),
              name: String(s.name),
              kind: Number(s.kind ?? 0),
              attributes: attrs(s.attributes as KeyValue[] | undefined),
              status: { code: Number((s.status as { code?: number } | undefined)?.code ?? 0), ...((s.status as { message?: string } | undefined)?.message ? { message: (s.status as { message: string }).message } : {}) },
              service,
              startNs: BigInt(String(s.startTimeUnixNano ?? '0')),
              endNs: BigInt(String(s.endTimeUnixNano ?? '0')),
            })
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      for (const w of [...waiters]) w()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    get requests() {
      return requests
    },
    waitFor(n, filter = () => true, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          const got = spans.filter(filter)
          if (got.length >= n) {
            waiters.delete(wake)
            clearTimeout(timer)
            resolve(got)
            return true
          }
          return false
        }
        const wake = (): void => void check()
        const timer = setTimeout(() => {
          waiters.delete(wake)
          reject(new Error(`timed out waiting for ${n} spans; got ${spans.filter(filter).length}: ${spans.map((s) => s.name).join(', ')}`))
        }, timeoutMs)
        waiters.add(wake)
        check()
      })
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
}
