// LiveConversation: a conversation's messages kept current from its event
// stream (GET /conversations/{id}/events): the first `snapshot`, then new
// messages, streamed chunks, finished messages and renames, resuming with
// Last-Event-ID after a drop. UI bindings subscribe to its state.
import { Emitter } from './emitter.js'
import type { HttpClient, ResponseOf, BodyOf } from './http.js'
import { EventStream, type EventStreamOptions, type ServerSentEvent, type StreamStatus } from './sse.js'

/** A message, as control's OpenAPI document describes it. */
export type Message = ResponseOf<'/conversations/{id}/messages', 'post'>
/** A conversation, as control's OpenAPI document describes it. */
export type Conversation = ResponseOf<'/projects/{id}/conversations', 'post'>
export type SendMessageBody = BodyOf<'/conversations/{id}/messages', 'post'>

/** The stream's envelope (`data:` of every event with an id). */
export interface ConversationEvent {
  seq: number
  kind: string
  data: unknown
}

/** `chunk` events: `offset` is the message's length in characters (code points) before `delta`. */
export interface ChunkData { messageId: string, offset: number, delta: string }
export interface MessageFinishedData { messageId: string, state: Message['state'], errorMessage: string | null, length: number }

export interface ConversationState {
  conversation: Conversation | null
  /** Oldest first; a new array after every change. The snapshot holds the newest 200. */
  messages: readonly Message[]
  /** True when the snapshot left out earlier messages (read them with `GET /conversations/{id}/messages`). */
  olderMessages: boolean
  /** `closed` once the server ended the stream (deleted, access revoked) or `close()` was called. */
  status: StreamStatus
  /** `deleted` / `access_revoked` when the server closed the stream, else null. */
  closedReason: string | null
  /** False until the first snapshot arrived. */
  loaded: boolean
  /** Set while repairing a gap (a chunk that did not line up): the stream restarts from a fresh snapshot. */
  outOfSync: boolean
}

export interface LiveConversationEvents {
  change: [state: ConversationState]
  /** Every event of the stream, parsed, in order. */
  event: [event: ConversationEvent]
  error: [error: unknown]
}

export class LiveConversation extends Emitter<LiveConversationEvents> {
  readonly id: string
  private current: ConversationState = { conversation: null, messages: [], olderMessages: false, status: 'connecting', closedReason: null, loaded: false, outOfSync: false }
  /** Code-point length of each message's content, so chunk offsets are checked without recounting. */
  private readonly lengths = new Map<string, number>()
  private stream: EventStream
  private closed = false

  constructor (private readonly http: HttpClient, id: string, private readonly options: Omit<EventStreamOptions, 'isFinal'> = {}) {
    super()
    this.id = id
    this.stream = this.open(options.lastEventId)
  }

  private open (lastEventId: string | undefined): EventStream {
    const path = `/conversations/${encodeURIComponent(this.id)}/events`
    const stream = new EventStream(
      (headers, signal) => this.http.fetchRaw(path, { headers, signal }),
      { ...this.options, lastEventId, isFinal: (e) => e.event === 'closed' }
    )
    stream.on('event', (e) => { if (stream === this.stream) this.apply(e) })
    stream.on('status', (status) => { if (stream === this.stream) this.update({ status }) })
    stream.on('error', (err) => { if (stream === this.stream) this.emit('error', err) })
    return stream
  }

  /** A gap in a message's text (should not happen: ids are contiguous): start over from a snapshot. */
  private resync (): void {
    if (this.closed || this.current.outOfSync) return
    this.update({ outOfSync: true })
    const old = this.stream
    this.stream = this.open(undefined)
    old.close()
  }

  get state (): ConversationState { return this.current }
  get messages (): readonly Message[] { return this.current.messages }
  /** The last event id received (persist it to resume a later stream without a snapshot). */
  get lastEventId (): string | undefined { return this.stream.lastEventId }
  /** Requests made by the underlying stream (1 + reconnects). */
  get connections (): number { return this.stream.connections }

  readonly subscribe = (listener: () => void): (() => void) => this.on('change', () => listener())
  readonly getSnapshot = (): ConversationState => this.current

  /** Posts a message (as the signed-in user); it appears in `messages` when its event arrives. */
  async send (content: string, extra: Omit<SendMessageBody, 'content'> = {}): Promise<Message> {
    return await this.http.post('/conversations/{id}/messages', { path: { id: this.id }, body: { ...extra, content } })
  }

  close (): void {
    this.closed = true
    this.stream.close()
    this.removeAllListeners()
  }

  private apply (sse: ServerSentEvent): void {
    let parsed: unknown
    try { parsed = JSON.parse(sse.data) } catch (err) { this.emit('error', err); return }
    if (sse.event === 'closed') {
      const reason = (parsed as { reason?: unknown } | null)?.reason
      this.update({ closedReason: typeof reason === 'string' ? reason : 'closed' })
      return
    }
    const event = parsed as ConversationEvent
    if (event === null || typeof event !== 'object' || typeof event.kind !== 'string') return
    this.emit('event', event)
    const data = event.data as Record<string, unknown>
    switch (event.kind) {
      case 'snapshot': {
        const { conversation, messages, olderMessages } = data as { conversation: Conversation, messages: Message[], olderMessages?: boolean }
        this.lengths.clear()
        for (const m of messages) this.lengths.set(m.id, codePoints(m.content))
        this.update({ conversation, messages: [...messages], olderMessages: olderMessages === true, loaded: true, outOfSync: false })
        break
      }
      case 'message': {
        const message = data as unknown as Message
        if (this.lengths.has(message.id)) break
        this.lengths.set(message.id, codePoints(message.content))
        this.update({ messages: [...this.current.messages, message] })
        break
      }
      case 'chunk': {
        const { messageId, offset, delta } = data as unknown as ChunkData
        const length = this.lengths.get(messageId)
        if (length === undefined || offset > length) { this.resync(); break }
        if (offset < length) break // already have it
        this.lengths.set(messageId, length + codePoints(delta))
        this.replace(messageId, (m) => ({ ...m, content: m.content + delta }))
        break
      }
      case 'message_finished': {
        const { messageId, state, errorMessage } = data as unknown as MessageFinishedData
        this.replace(messageId, (m) => ({ ...m, state, errorMessage }))
        break
      }
      case 'conversation_updated': {
        const before = this.current.conversation
        // `role` is per viewer and not in the event: keep ours.
        this.update({ conversation: { ...(data as unknown as Conversation), role: before?.role ?? (data as unknown as Conversation).role } })
        break
      }
      default:
        break
    }
  }

  private replace (id: string, change: (m: Message) => Message): void {
    const index = this.current.messages.findIndex((m) => m.id === id)
    if (index === -1) return
    const messages = [...this.current.messages]
    messages[index] = change(messages[index] as Message)
    this.update({ messages })
  }

  private update (patch: Partial<ConversationState>): void {
    this.current = { ...this.current, ...patch }
    this.emit('change', this.current)
  }
}

function codePoints (s: string): number {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    // A high surrogate followed by a low one is one code point.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) i++
    }
    n++
  }
  return n
}
