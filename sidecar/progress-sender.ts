/**
 * The HTTP side of progress reporting: one report to upstream's `POST /envelopes/{id}/progress`,
 * or a batch to ours, `POST /envelopes/progress` (docs/gateway.md). Each request has a timeout and
 * one retry on a network error or a 5xx; a 4xx is an answer, not retried. The queueing policy is
 * the reporter's (progress-reporter.ts).
 *
 * node:http(s) on a keep-alive agent rather than fetch ({@link GatewayHttp}, also the end actors'
 * `/final`): measured here, a report costs the sidecar ~0.12–0.28 ms of CPU this way and
 * ~0.5–0.95 ms through fetch (undici), and a sidecar sends three per envelope.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { errorMessage } from '../src/errors.js'

/** ok: 2xx; rejected: 4xx (e.g. 404, an envelope that did not come through the gateway); failed: timeout/network/5xx after the retry. */
export type SendVerdict = 'ok' | 'rejected' | 'failed'

export interface SendResult {
  verdict: SendVerdict
  /** HTTP status of the last answer (none after a network error). */
  httpStatus?: number
  /** Why it failed, for the log. */
  error?: string
}

export type BatchResult =
  /** One verdict per report, in order. */
  | { kind: 'results'; verdicts: SendVerdict[] }
  /** The whole request failed or was refused (auth); every report gets this verdict. */
  | { kind: 'all'; result: SendResult }
  /** The gateway has no batch endpoint (upstream's answers 404/405) or refused this batch's size. */
  | { kind: 'unsupported'; httpStatus: number }

export interface ProgressSenderOptions {
  base: string
  headers: Record<string, string>
  timeoutMs: number
  retryDelayMs: number
  /** Connections kept open to the gateway (requests in flight at once). */
  maxSockets: number
}

/**
 * POSTs to the gateway on a keep-alive agent (node:http or node:https by the URL): one request,
 * a deadline on the whole exchange, the answer read in full so the connection is reused. Shared by
 * the progress sender and the end actors' `/final` report.
 */
export class GatewayHttp {
  private readonly agent: HttpAgent
  private readonly send: typeof httpRequest

  constructor(base: string, maxSockets: number) {
    const tls = base.startsWith('https:')
    this.agent = tls ? new HttpsAgent({ keepAlive: true, maxSockets }) : new HttpAgent({ keepAlive: true, maxSockets })
    this.send = tls ? httpsRequest : httpRequest
  }

  /** Closes the kept-alive connections (drain). */
  close(): void {
    this.agent.destroy()
  }

  post(url: string, headers: Record<string, string>, body: string, timeoutMs: number): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const options: RequestOptions = { method: 'POST', agent: this.agent, headers: { ...headers, 'content-length': Buffer.byteLength(body) } }
      let timer: NodeJS.Timeout | undefined
      const fail = (err: Error): void => {
        clearTimeout(timer)
        reject(err)
      }
      const req = this.send(url, options, (res: IncomingMessage) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('error', fail)
        res.on('close', () => {
          if (!res.complete) fail(new Error('connection closed before the answer was complete'))
        })
        res.on('end', () => {
          clearTimeout(timer)
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') })
        })
      })
      timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
      req.on('error', fail)
      req.end(body)
    })
  }
}

export class ProgressSender {
  private readonly http: GatewayHttp

  constructor(private readonly o: ProgressSenderOptions) {
    this.http = new GatewayHttp(o.base, o.maxSockets)
  }

  /** Closes the kept-alive connections (drain). */
  close(): void {
    this.http.close()
  }

  async one(id: string, body: string): Promise<SendResult> {
    const r = await this.post(`${this.o.base}/envelopes/${encodeURIComponent(id)}/progress`, body, false)
    return r.result
  }

  /** `items`: the reports as JSON objects with their envelope `id`, already serialised. */
  async batch(items: readonly string[]): Promise<BatchResult> {
    const r = await this.post(`${this.o.base}/envelopes/progress`, `{"reports":[${items.join(',')}]}`, true)
    const status = r.result.httpStatus
    if (r.result.verdict === 'ok') {
      const results = (r.json as { results?: unknown } | undefined)?.results
      if (Array.isArray(results) && results.length === items.length) return { kind: 'results', verdicts: results.map(itemVerdict) }
      // A 2xx that is not our answer: something else serves that path.
      return { kind: 'unsupported', httpStatus: status ?? 200 }
    }
    if (r.result.verdict === 'rejected' && status !== 401 && status !== 403 && status !== 429) return { kind: 'unsupported', httpStatus: status ?? 400 }
    return { kind: 'all', result: r.result }
  }

  private async post(url: string, body: string, wantJson: boolean): Promise<{ result: SendResult; json?: unknown }> {
    let last: SendResult = { verdict: 'failed' }
    for (let attempt = 1; attempt <= 2; attempt++) {
      try {
        const res = await this.http.post(url, this.o.headers, body, this.o.timeoutMs)
        if (res.status >= 200 && res.status < 300) return { result: { verdict: 'ok', httpStatus: res.status }, ...(wantJson ? { json: parseJson(res.text) } : {}) }
        if (res.status < 500) return { result: { verdict: 'rejected', httpStatus: res.status } }
        last = { verdict: 'failed', httpStatus: res.status, error: `gateway answered ${res.status}` }
      } catch (err) {
        last = { verdict: 'failed', error: errorMessage(err) }
      }
      if (attempt === 1) await new Promise((r) => setTimeout(r, this.o.retryDelayMs))
    }
    return { result: last }
  }
}

function itemVerdict(r: unknown): SendVerdict {
  const code = (r as { code?: unknown } | null)?.code
  if (typeof code !== 'number') return 'failed'
  return code < 300 ? 'ok' : code < 500 ? 'rejected' : 'failed'
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
