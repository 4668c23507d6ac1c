// Server-sent events over fetch(): unlike EventSource, it can send the
// `Authorization` header (so the credential never sits in a URL) and resumes
// with `Last-Event-ID` on every reconnect, with backoff and jitter.
import { Backoff, type BackoffOptions } from './backoff.js'
import { Emitter } from './emitter.js'
import { TandemError, networkError } from './errors.js'

/** One dispatched event: its `id:` (if the server set one), `event:` name and `data:` text. */
export interface ServerSentEvent {
  id: string | undefined
  event: string
  data: string
}

/** Incremental parser of a `text/event-stream` body (WHATWG HTML, "event stream interpretation"). */
export class SseParser {
  private buffer = ''
  private data: string[] = []
  private event = ''
  private id: string | undefined = undefined
  private sawId = false
  /** The last `retry:` value, in ms. */
  retryMs: number | undefined = undefined
  /**
   * The last event ID the stream set, including by an `id:`-only frame (the
   * server's way of moving a reader past events it may not see).
   */
  lastEventId: string | undefined = undefined

  /** Feeds decoded text; returns the events completed by it. */
  push (text: string): ServerSentEvent[] {
    this.buffer += text
    const out: ServerSentEvent[] = []
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer)
      if (match === null) break
      // A lone \r at the very end may be the first half of \r\n: wait for more.
      if (match[0] === '\r' && match.index === this.buffer.length - 1) break
      const line = this.buffer.slice(0, match.index)
      this.buffer = this.buffer.slice(match.index + match[0].length)
      const event = this.line(line)
      if (event !== null) out.push(event)
    }
    return out
  }

  private line (line: string): ServerSentEvent | null {
    if (line === '') {
      if (this.sawId) this.lastEventId = this.id
      const event = this.data.length > 0 ? { id: this.sawId ? this.id : undefined, event: this.event || 'message', data: this.data.join('\n') } : null
      this.data = []
      this.event = ''
      this.sawId = false
      return event
    }
    if (line.startsWith(':')) return null
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    switch (field) {
      case 'data': this.data.push(value); break
      case 'event': this.event = value; break
      case 'id': if (!value.includes('\0')) { this.id = value; this.sawId = true } break
      case 'retry': if (/^\d+$/.test(value)) this.retryMs = Number(value); break
      default: break
    }
    return null
  }
}

/**
 * - `connecting`: the request is on its way (first time or after a drop);
 * - `open`: events are flowing;
 * - `closed`: ended for good (by the server's final event, by `close()`, or a refusal: 401/403/404).
 */
export type StreamStatus = 'connecting' | 'open' | 'closed'

export interface EventStreamEvents {
  event: [event: ServerSentEvent]
  status: [status: StreamStatus]
  /** Failures: transient ones are followed by a retry; a refusal closes the stream. */
  error: [error: unknown]
}

export interface EventStreamOptions {
  /** Resume after this event id (sent as `Last-Event-ID` on the first request). */
  lastEventId?: string | undefined
  backoff?: BackoffOptions
  /** Returns true for an event after which the stream ends for good (e.g. `closed`). */
  isFinal?: (event: ServerSentEvent) => boolean
  /** A response silent this long (ms) is dropped and the stream reconnects; control sends a keepalive every 15 s (default 45 000). */
  idleTimeoutMs?: number
}

/** Opens `path` on control and keeps reading it, reconnecting with `Last-Event-ID`. */
export class EventStream extends Emitter<EventStreamEvents> {
  private currentStatus: StreamStatus = 'connecting'
  private lastId: string | undefined
  private readonly abort = new AbortController()
  private readonly backoff: Backoff
  private connects = 0

  constructor (
    private readonly open: (headers: Record<string, string>, signal: AbortSignal) => Promise<Response>,
    private readonly options: EventStreamOptions = {}
  ) {
    super()
    this.lastId = options.lastEventId
    this.backoff = new Backoff(options.backoff ?? { initialMs: 250, maxMs: 10_000 })
    queueMicrotask(() => { void this.run() })
  }

  get status (): StreamStatus { return this.currentStatus }
  /** The id of the last event received (what a reconnect resumes after). */
  get lastEventId (): string | undefined { return this.lastId }
  /** How many requests the stream has made (the first one plus reconnects). */
  get connections (): number { return this.connects }

  close (): void {
    this.abort.abort()
    this.setStatus('closed')
  }

  private async run (): Promise<void> {
    while (!this.abort.signal.aborted) {
      this.setStatus('connecting')
      let retryMs: number | undefined
      try {
        const headers: Record<string, string> = { accept: 'text/event-stream' }
        if (this.lastId !== undefined) headers['last-event-id'] = this.lastId
        this.connects++
        const final = await this.request(headers)
        if (final) { this.close(); return }
        retryMs = undefined
      } catch (err) {
        if (this.abort.signal.aborted) return
        const error = err instanceof TandemError ? err : networkError(err)
        this.emit('error', error)
        if (!error.retryable) { this.close(); return }
        retryMs = error.retryAfter === undefined ? undefined : error.retryAfter * 1000
      }
      if (this.abort.signal.aborted) return
      this.setStatus('connecting')
      await sleep(Math.max(this.backoff.next(), retryMs ?? 0), this.abort.signal)
    }
  }

  /**
   * One request, read to its end; true when a final event arrived. Aborted
   * (and so retried) when nothing arrives for `idleTimeoutMs`: a connection
   * that died without a FIN would otherwise hang forever.
   */
  private async request (headers: Record<string, string>): Promise<boolean> {
    const attempt = new AbortController()
    const stop = (): void => attempt.abort()
    this.abort.signal.addEventListener('abort', stop)
    const idleMs = this.options.idleTimeoutMs ?? 45_000
    let idle: ReturnType<typeof setTimeout> | undefined
    const arm = (): void => {
      clearTimeout(idle)
      idle = setTimeout(() => attempt.abort(new TandemError({ status: 0, code: 'timeout', message: `no data on the event stream for ${idleMs} ms` })), idleMs)
    }
    try {
      arm()
      const res = await this.open(headers, attempt.signal)
      if (res.body === null) throw new TandemError({ status: res.status, code: 'bad_response', message: 'the event stream has no body' })
      this.setStatus('open')
      const final = await this.read(res.body, arm, attempt.signal)
      if (attempt.signal.aborted) throw attempt.signal.reason
      return final
    } catch (err) {
      throw attempt.signal.aborted && attempt.signal.reason instanceof TandemError ? attempt.signal.reason : err
    } finally {
      clearTimeout(idle)
      this.abort.signal.removeEventListener('abort', stop)
    }
  }

  private async read (body: ReadableStream<Uint8Array>, onData: () => void, signal: AbortSignal): Promise<boolean> {
    const parser = new SseParser()
    const decoder = new TextDecoder()
    const reader = body.getReader()
    // Whatever the body is wired to, an abort ends a pending read.
    const cancel = (): void => { reader.cancel().catch(() => {}) }
    signal.addEventListener('abort', cancel)
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) return false
        onData()
        for (const event of parser.push(decoder.decode(value, { stream: true }))) {
          if (event.id !== undefined) this.lastId = event.id
          this.backoff.reset()
          this.emit('event', event)
          if (this.options.isFinal?.(event) === true) return true
        }
        if (parser.lastEventId !== undefined) this.lastId = parser.lastEventId
      }
    } finally {
      signal.removeEventListener('abort', cancel)
      reader.releaseLock()
      body.cancel().catch(() => {})
    }
  }

  private setStatus (status: StreamStatus): void {
    if (this.currentStatus === status || this.currentStatus === 'closed') return
    this.currentStatus = status
    this.emit('status', status)
  }
}

function sleep (ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms)
    function done (): void { clearTimeout(timer); signal.removeEventListener('abort', done); resolve() }
    signal.addEventListener('abort', done)
  })
}
