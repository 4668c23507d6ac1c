// DocumentConnection: one Yjs document kept live through the relay.
//
// It speaks the y-websocket protocol (sync + awareness, from y-protocols)
// itself instead of wrapping y-websocket's provider, because Tandem's tokens
// work once: every connection attempt fetches a fresh token from control (or
// presents the relay's resume ticket after a drop), which the stock provider (one fixed URL, its own reconnect loop) cannot do
// without being taken apart. It owns the reconnect loop (backoff with jitter),
// stops for good when access is revoked, and exposes its state as an explicit
// status plus events, so UI bindings only subscribe.
import type * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as authProtocol from 'y-protocols/auth'
import { Backoff, type BackoffOptions } from './backoff.js'
import { Emitter } from './emitter.js'
import { TandemError } from './errors.js'

const MESSAGE_SYNC = 0
const MESSAGE_AWARENESS = 1
const MESSAGE_AUTH = 2
const MESSAGE_QUERY_AWARENESS = 3
/** The relay's resume ticket (`[100][varString json]`), sent only to connections that asked with `resume=1`. */
const MESSAGE_RESUME_TICKET = 100
/** The relay refused a resume ticket: connect again at once with a fresh token. */
const CLOSE_TICKET_REFUSED = 4401
/** A ticket this close to its expiry (ms) is not presented any more. */
const TICKET_MARGIN_MS = 2_000

/** Close codes after which reconnecting cannot help (see proto-docs/relay-protocol.md). */
const CLOSE_FORBIDDEN = 1008
const CLOSE_FATAL = new Set([1002, 1003, 1009])

export type ResourceType = 'doc' | 'diagram' | 'task'

/**
 * - `connecting`: fetching a token or opening the socket;
 * - `connected`: the socket is open (see `synced` for the initial exchange);
 * - `disconnected`: the socket dropped; a retry is scheduled (or `disconnect()` was called);
 * - `revoked`: access was taken away: no further attempts, ever (until `reconnect()`);
 * - `failed`: an error that retrying cannot fix (signed out, client bug): no further attempts.
 */
export type ConnectionStatus = 'connecting' | 'connected' | 'disconnected' | 'revoked' | 'failed'

export interface Revocation {
  /** Human-readable reason from the relay or control. */
  reason: string
  /** How it was learnt: the relay's y-protocols auth message, its JSON notice, close 1008, or control refusing a token (403/404). */
  source: 'auth-message' | 'notice' | 'close' | 'token'
  /** The token request's error when `source` is `token`. */
  error?: TandemError
}

/** An immutable view of the connection, replaced on every change (for `useSyncExternalStore`). */
export interface DocumentState {
  status: ConnectionStatus
  /** True once the relay's state has been received on the current socket. */
  synced: boolean
  /** Set when the status is `revoked`. */
  revoked: Revocation | null
  /** The error that made the status `failed`, or the last transient error. */
  error: unknown
  /** How many collaboration tokens this connection has requested. */
  tokenRequests: number
  /** How many connection attempts presented a resume ticket instead of a token. */
  ticketAttempts: number
}

export interface DocumentEvents {
  status: [status: ConnectionStatus]
  synced: [synced: boolean]
  revoked: [revocation: Revocation]
  /** Transient failures that will be retried (token request, socket) and fatal ones. */
  error: [error: unknown]
  /** Any change of `state`. */
  change: [state: DocumentState]
}

type WebSocketCtor = new (url: string) => WebSocket

export interface ConnectDocumentOptions {
  /** URL form: `y-websocket` (`/{roomId}`, default) or `y-partykit` (`/parties/main/{roomId}`). */
  urlForm?: 'y-websocket' | 'y-partykit'
  /** An existing awareness instance (default: a new one, destroyed with the connection). */
  awareness?: awarenessProtocol.Awareness
  /** Reconnect delays (default 250 ms doubling up to 10 s, with jitter). */
  backoff?: BackoffOptions
  /** A socket silent this long (ms) is dropped and reconnected; the relay sends keepalives every 10 s (default 30 000). */
  timeoutMs?: number
  /** Start connecting at once (default true); otherwise call `reconnect()`. */
  connect?: boolean
  /** WebSocket implementation (default: the global one; pass `ws` in Node < 22). */
  WebSocket?: WebSocketCtor
  /**
   * Ask the relay for resume tickets and rejoin with the latest one after a drop instead of a
   * fresh token (default true; see proto-docs/relay-protocol.md, "Resume tickets"). The ticket is
   * kept in memory only; a refused one (close 4401) is dropped and a token requested at once.
   */
  resumeTickets?: boolean
}

/** The latest resume ticket of a connection, and when (by this clock) it stops being presented. */
interface ResumeTicket {
  ticket: string
  expiresAt: number
}

/** What a connection needs from the client: where the relay is and how to get a token. */
export interface DocumentTransport {
  relayUrl: string
  requestToken: (resourceType: ResourceType, resourceId: string) => Promise<{ token: string, roomId: string }>
  WebSocket?: WebSocketCtor | undefined
}

export class DocumentConnection extends Emitter<DocumentEvents> {
  readonly doc: Y.Doc
  readonly awareness: awarenessProtocol.Awareness
  readonly resourceType: ResourceType
  readonly resourceId: string
  /** `{resourceType}-{resourceId}`, the relay's room. */
  readonly roomId: string

  private current: DocumentState = { status: 'disconnected', synced: false, revoked: null, error: null, tokenRequests: 0, ticketAttempts: 0 }
  private ws: WebSocket | null = null
  /** Bumped by every attempt and by stop/destroy, so late callbacks of an old attempt do nothing. */
  private generation = 0
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  private readonly checkTimer: ReturnType<typeof setInterval>
  private lastMessageAt = 0
  private destroyed = false
  private readonly ownAwareness: boolean
  private readonly backoff: Backoff
  private readonly timeoutMs: number
  private readonly urlForm: 'y-websocket' | 'y-partykit'
  private readonly WS: WebSocketCtor
  private readonly removeOnline: () => void
  private readonly transport: DocumentTransport
  private readonly resumeTickets: boolean
  /** The latest resume ticket for this room (memory only: it is a bearer credential). */
  private ticket: ResumeTicket | null = null

  constructor (transport: DocumentTransport, resourceType: ResourceType, resourceId: string, doc: Y.Doc, options: ConnectDocumentOptions = {}) {
    super()
    this.transport = transport
    this.doc = doc
    this.resourceType = resourceType
    this.resourceId = resourceId
    this.roomId = `${resourceType}-${resourceId}`
    this.ownAwareness = options.awareness === undefined
    this.awareness = options.awareness ?? new awarenessProtocol.Awareness(doc)
    this.backoff = new Backoff(options.backoff)
    this.timeoutMs = options.timeoutMs ?? 30_000
    this.urlForm = options.urlForm ?? 'y-websocket'
    this.resumeTickets = options.resumeTickets ?? true
    const WS = options.WebSocket ?? transport.WebSocket ?? (globalThis as { WebSocket?: WebSocketCtor }).WebSocket
    if (WS === undefined) throw new TypeError('no WebSocket implementation: pass options.WebSocket (e.g. the `ws` package in Node)')
    this.WS = WS

    doc.on('update', this.onDocUpdate)
    this.awareness.on('update', this.onAwarenessUpdate)
    this.checkTimer = setInterval(this.checkSilence, Math.max(100, Math.min(this.timeoutMs / 3, 10_000)))
    this.removeOnline = listenOnline(() => {
      // The browser is back online: do not wait out the backoff.
      if (this.current.status === 'disconnected' && this.retryTimer !== null) this.reconnect()
    })
    if (options.connect !== false) void this.attempt()
  }

  /** The current state (a new object after every change). */
  get state (): DocumentState { return this.current }
  get status (): ConnectionStatus { return this.current.status }
  get synced (): boolean { return this.current.synced }
  get revoked (): Revocation | null { return this.current.revoked }
  get tokenRequests (): number { return this.current.tokenRequests }

  /** For `useSyncExternalStore`: calls `listener` after every state change. */
  readonly subscribe = (listener: () => void): (() => void) => this.on('change', () => listener())
  /** For `useSyncExternalStore`. */
  readonly getSnapshot = (): DocumentState => this.current

  /** Connects now (with a fresh token), whatever the status, unless destroyed. */
  reconnect (): void {
    if (this.destroyed) return
    this.closeSocket()
    this.clearRetry()
    this.backoff.reset()
    this.ticket = null
    this.update({ revoked: null, error: null })
    void this.attempt()
  }

  /** Closes the socket and stops retrying until `reconnect()`. */
  disconnect (): void {
    if (this.destroyed) return
    this.generation++
    this.clearRetry()
    this.closeSocket()
    this.update({ status: 'disconnected', synced: false })
  }

  /** Closes for good and releases listeners and timers (the Y.Doc is the caller's). */
  destroy (): void {
    if (this.destroyed) return
    this.disconnect()
    this.destroyed = true
    clearInterval(this.checkTimer)
    this.removeOnline()
    this.doc.off('update', this.onDocUpdate)
    this.awareness.off('update', this.onAwarenessUpdate)
    if (this.ownAwareness) this.awareness.destroy()
    this.removeAllListeners()
  }

  private async attempt (): Promise<void> {
    const gen = ++this.generation
    this.retryTimer = null
    const ticket = this.usableTicket()
    if (ticket !== null) {
      this.update({ status: 'connecting', synced: false, ticketAttempts: this.current.ticketAttempts + 1 })
      this.open(gen, this.url({ ticket }))
      return
    }
    this.update({ status: 'connecting', synced: false, tokenRequests: this.current.tokenRequests + 1 })
    let granted: { token: string, roomId: string }
    try {
      granted = await this.transport.requestToken(this.resourceType, this.resourceId)
    } catch (err) {
      if (gen !== this.generation) return
      if (err instanceof TandemError && (err.status === 403 || err.status === 404)) {
        this.revoke({ reason: err.message, source: 'token', error: err })
      } else if (err instanceof TandemError && !err.retryable) {
        this.fail(err)
      } else {
        this.emit('error', err)
        this.scheduleRetry(err instanceof TandemError ? err.retryAfter : undefined, err)
      }
      return
    }
    if (gen !== this.generation) return
    this.open(gen, this.url(granted))
  }

  /** The ticket to present now, if one is held and not about to expire. */
  private usableTicket (): string | null {
    if (this.ticket === null) return null
    if (Date.now() + TICKET_MARGIN_MS >= this.ticket.expiresAt) {
      this.ticket = null
      return null
    }
    return this.ticket.ticket
  }

  /** Opens the socket of attempt `gen`. */
  private open (gen: number, url: string): void {
    if (gen !== this.generation) return
    let ws: WebSocket
    try {
      ws = new this.WS(url)
    } catch (err) {
      this.fail(err)
      return
    }
    ws.binaryType = 'arraybuffer'
    this.ws = ws
    ws.onopen = () => {
      if (ws !== this.ws) return
      this.lastMessageAt = Date.now()
      this.update({ status: 'connected', error: null })
      const step1 = encoding.createEncoder()
      encoding.writeVarUint(step1, MESSAGE_SYNC)
      syncProtocol.writeSyncStep1(step1, this.doc)
      this.send(encoding.toUint8Array(step1))
      if (this.awareness.getLocalState() !== null) this.sendAwareness([this.doc.clientID])
    }
    ws.onmessage = (event: MessageEvent) => {
      if (ws !== this.ws) return
      this.lastMessageAt = Date.now()
      this.receive(event.data)
    }
    ws.onclose = (event: CloseEvent) => {
      if (ws !== this.ws) return
      this.socketClosed(event.code, event.reason)
    }
    ws.onerror = () => { /* a close event follows */ }
  }

  /** The relay URL for a granted token (in the room control named with it) or a resume ticket. */
  private url (credential: { token: string, roomId: string } | { ticket: string }): string {
    const base = this.transport.relayUrl.replace(/\/+$/, '')
    const prefix = this.urlForm === 'y-partykit' ? '/parties/main' : ''
    const resume = this.resumeTickets ? '&resume=1' : ''
    if ('ticket' in credential) {
      return `${base}${prefix}/${encodeURIComponent(this.roomId)}?ticket=${encodeURIComponent(credential.ticket)}${resume}`
    }
    const room = encodeURIComponent(credential.roomId || this.roomId)
    return `${base}${prefix}/${room}?token=${encodeURIComponent(credential.token)}${resume}`
  }

  /** Keeps the relay's latest resume ticket (`{"ticket","expiresInSecs"}`). */
  private storeTicket (json: string): void {
    if (!this.resumeTickets) return
    const message = JSON.parse(json) as { ticket?: unknown, expiresInSecs?: unknown }
    if (typeof message.ticket !== 'string' || typeof message.expiresInSecs !== 'number') return
    this.ticket = { ticket: message.ticket, expiresAt: Date.now() + message.expiresInSecs * 1000 }
  }

  private receive (data: unknown): void {
    if (typeof data === 'string') {
      // The relay's only text frame: the JSON revocation notice (y-partykit path).
      try {
        const notice = JSON.parse(data) as { type?: unknown, reason?: unknown }
        if (notice.type === 'permission_revoked') this.revoke({ reason: String(notice.reason ?? 'permission revoked'), source: 'notice' })
      } catch { /* not JSON: ignore */ }
      return
    }
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : null
    if (bytes === null) return
    try {
      const decoder = decoding.createDecoder(bytes)
      const reply = encoding.createEncoder()
      switch (decoding.readVarUint(decoder)) {
        case MESSAGE_SYNC: {
          encoding.writeVarUint(reply, MESSAGE_SYNC)
          const kind = syncProtocol.readSyncMessage(decoder, reply, this.doc, this)
          if (kind === syncProtocol.messageYjsSyncStep2 && !this.current.synced) {
            this.backoff.reset()
            this.update({ synced: true })
            this.emit('synced', true)
          }
          break
        }
        case MESSAGE_AWARENESS:
          awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(decoder), this)
          break
        case MESSAGE_AUTH:
          authProtocol.readAuthMessage(decoder, this.doc, (_doc, reason) => this.revoke({ reason: noticeReason(reason), source: 'auth-message' }))
          break
        case MESSAGE_QUERY_AWARENESS:
          this.sendAwareness([...this.awareness.getStates().keys()])
          break
        case MESSAGE_RESUME_TICKET:
          this.storeTicket(decoding.readVarString(decoder))
          break
        default:
          break
      }
      if (encoding.length(reply) > 1) this.send(encoding.toUint8Array(reply))
    } catch (err) {
      // A frame we cannot decode: start over on a fresh socket.
      this.emit('error', err)
      this.dropSocket()
    }
  }

  private socketClosed (code: number, reason: string): void {
    this.ws = null
    this.forgetRemoteAwareness()
    if (this.current.status === 'revoked' || this.current.status === 'failed') return
    if (code === CLOSE_TICKET_REFUSED) {
      // Expired, another relay secret, or access lost: a fresh token decides, at once.
      this.ticket = null
      this.update({ status: 'disconnected', synced: false })
      this.clearRetry()
      this.retryTimer = setTimeout(() => { void this.attempt() }, 0)
    } else if (code === CLOSE_FORBIDDEN) {
      this.revoke({ reason: reason || 'AUTH_FORBIDDEN', source: 'close' })
    } else if (CLOSE_FATAL.has(code)) {
      this.fail(new Error(`the relay closed the connection: ${code} ${reason}`))
    } else {
      this.update({ status: 'disconnected', synced: false })
      this.scheduleRetry(undefined, null)
    }
  }

  private revoke (revocation: Revocation): void {
    if (this.current.status === 'revoked') return
    this.ticket = null
    this.generation++
    this.clearRetry()
    this.closeSocket()
    this.update({ status: 'revoked', synced: false, revoked: revocation })
    this.emit('revoked', revocation)
  }

  private fail (error: unknown): void {
    this.generation++
    this.clearRetry()
    this.closeSocket()
    this.update({ status: 'failed', synced: false, error })
    this.emit('error', error)
  }

  private scheduleRetry (retryAfterSecs: number | undefined, error: unknown): void {
    if (this.destroyed) return
    const delay = Math.max(this.backoff.next(), (retryAfterSecs ?? 0) * 1000)
    this.update({ status: 'disconnected', synced: false, error })
    this.clearRetry()
    this.retryTimer = setTimeout(() => { void this.attempt() }, delay)
  }

  private clearRetry (): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    this.retryTimer = null
  }

  /** Drops the socket without waiting for its close handshake, then retries. */
  private dropSocket (): void {
    if (this.ws === null) return
    this.closeSocket()
    this.socketClosed(4000, 'dropped by client')
  }

  private closeSocket (): void {
    const ws = this.ws
    this.ws = null
    if (ws === null) return
    ws.onopen = ws.onmessage = ws.onclose = null
    // Closing a socket that is still connecting reports an error (Node's `ws` throws one nobody listens to).
    ws.onerror = () => {}
    try { ws.close() } catch { /* already closed */ }
    this.forgetRemoteAwareness()
  }

  private readonly checkSilence = (): void => {
    if (this.ws !== null && this.current.status === 'connected' && Date.now() - this.lastMessageAt > this.timeoutMs) this.dropSocket()
  }

  private forgetRemoteAwareness (): void {
    const others = [...this.awareness.getStates().keys()].filter((id) => id !== this.doc.clientID)
    if (others.length > 0) awarenessProtocol.removeAwarenessStates(this.awareness, others, this)
  }

  private send (message: Uint8Array): void {
    const ws = this.ws
    if (ws !== null && ws.readyState === 1) ws.send(message)
  }

  private sendAwareness (clients: number[]): void {
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, MESSAGE_AWARENESS)
    encoding.writeVarUint8Array(encoder, awarenessProtocol.encodeAwarenessUpdate(this.awareness, clients))
    this.send(encoding.toUint8Array(encoder))
  }

  private readonly onDocUpdate = (update: Uint8Array, origin: unknown): void => {
    if (origin === this) return
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, MESSAGE_SYNC)
    syncProtocol.writeUpdate(encoder, update)
    this.send(encoding.toUint8Array(encoder))
  }

  private readonly onAwarenessUpdate = ({ added, updated, removed }: { added: number[], updated: number[], removed: number[] }, origin: unknown): void => {
    if (origin === this) return
    this.sendAwareness([...added, ...updated, ...removed])
  }

  private update (patch: Partial<DocumentState>): void {
    const before = this.current
    const next = { ...before, ...patch }
    if (Object.keys(patch).every((k) => Object.is(before[k as keyof DocumentState], next[k as keyof DocumentState]))) return
    this.current = next
    if (next.status !== before.status) this.emit('status', next.status)
    if (before.synced && !next.synced) this.emit('synced', false)
    this.emit('change', next)
  }
}

function listenOnline (handler: () => void): () => void {
  const target = globalThis as { addEventListener?: (type: string, h: () => void) => void, removeEventListener?: (type: string, h: () => void) => void }
  if (typeof target.addEventListener !== 'function' || typeof target.removeEventListener !== 'function') return () => {}
  target.addEventListener('online', handler)
  return () => target.removeEventListener?.('online', handler)
}

/** The relay's auth-message reason is its JSON notice (`{"type":"permission_revoked","reason":…}`): take the human part. */
function noticeReason (reason: string): string {
  try {
    const notice = JSON.parse(reason) as { reason?: unknown }
    if (typeof notice.reason === 'string') return notice.reason
  } catch { /* a plain-text reason */ }
  return reason
}
