/**
 * GET /envelopes/{id}/stream: upstream's SSE format (`event: update` + `data: <EnvelopeUpdate
 * JSON>`, `: keepalive` comments every 15 s), history then live without a gap, closed after the
 * final update, also when the envelope was final before the client connected (SPEC §11 #19).
 * A slow client is never dropped silently: while its socket is backed up nothing is queued for
 * it, and once it drains the stream continues from the store where it left off.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ServerResponse } from 'node:http'
import { errorMessage } from '../src/errors.js'
import type { Logger } from '../src/logger.js'
import { EnvelopeFollower } from './envelope-follower.js'
import type { GatewayMetrics } from './metrics.js'
import type { EnvelopeRecord, SequencedUpdate } from './store/types.js'
import { storeError, type ToolService } from './tool-service.js'

/**
 * One SSE frame per update, shared by every stream of the envelope: 1,000 streams cost one
 * JSON.stringify and one UTF-8 encoding, not a thousand.
 */
const frames = new WeakMap<SequencedUpdate, Buffer>()
function frame(u: SequencedUpdate): Buffer {
  let f = frames.get(u)
  if (f === undefined) {
    f = Buffer.from(`event: update\ndata: ${JSON.stringify(u.update)}\n\n`)
    frames.set(u, f)
  }
  return f
}

interface Session {
  res: ServerResponse
  follower?: EnvelopeFollower
  keepalive: NodeJS.Timeout
  closed: boolean
}

export class SseHub {
  private readonly sessions = new Set<Session>()
  private closing = false

  constructor(
    private readonly service: ToolService,
    private readonly metrics: GatewayMetrics,
    private readonly logger: Logger,
    private readonly keepaliveMs: number,
  ) {}

  get size(): number {
    return this.sessions.size
  }

  async stream(req: FastifyRequest, reply: FastifyReply, id: string): Promise<void> {
    if (this.closing) {
      await reply.code(503).type('text/plain; charset=utf-8').send('Gateway shutting down\n')
      return
    }
    // The follower subscribes and reads the envelope before anything is sent, so a missing
    // envelope is an ordinary 404 (upstream: "Envelope not found") and costs no extra read.
    let session: Session | undefined
    const res = reply.raw
    const follower = new EnvelopeFollower(
      this.service.store,
      id,
      (u) => (!session || session.closed ? true : res.write(frame(u))),
      (e) => {
        if (e.reason === 'error') this.logger.warn({ envelope_id: id, err: errorMessage(e.error) }, 'SSE stream ended: store read failed')
        if (session) this.end(session)
      },
    )
    let rec: EnvelopeRecord | undefined
    try {
      rec = await follower.open()
    } catch (err) {
      throw storeError(err)
    }
    if (!rec) {
      await reply.code(404).type('text/plain; charset=utf-8').send('Envelope not found\n')
      return
    }
    // HEAD (Fastify serves it for every GET): the headers alone; a stream that never ends would
    // leave the client waiting for headers Node sends with the first body write.
    if (req.method === 'HEAD') {
      follower.close()
      await reply.code(200).type('text/event-stream').header('cache-control', 'no-cache').send()
      return
    }
    reply.hijack()
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    })
    res.socket?.setNoDelay(true)
    const s: Session = {
      res,
      follower,
      closed: false,
      keepalive: setInterval(() => {
        if (!s.closed) res.write(': keepalive\n\n')
      }, this.keepaliveMs),
    }
    session = s
    this.sessions.add(s)
    this.metrics.sseClients.inc()
    const end = (): void => this.end(s)
    req.raw.on('close', end)
    res.on('close', end)
    res.on('drain', () => follower.resume())
    try {
      await follower.run()
      if (s.closed) follower.close()
      // Live now (history read, subscribed): the response starts here even when no event was
      // written, else a client of an envelope with no update yet (EventSource not open, fetch
      // pending) would wait for the first keepalive.
      else res.flushHeaders()
    } catch (err) {
      this.logger.warn({ envelope_id: id, err: errorMessage(err) }, 'SSE stream failed')
      end()
    }
  }

  /** Ends every stream cleanly (graceful shutdown): clients reconnect to another replica. */
  closeAll(): void {
    this.closing = true
    for (const s of [...this.sessions]) this.end(s)
  }

  private end(s: Session): void {
    if (s.closed) return
    s.closed = true
    clearInterval(s.keepalive)
    s.follower?.close()
    this.sessions.delete(s)
    this.metrics.sseClients.dec()
    if (!s.res.writableEnded) s.res.end()
  }
}
