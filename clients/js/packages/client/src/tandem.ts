// createTandem: the entry point. One object per signed-in app: typed REST
// calls (`api`), live documents (`connectDocument`) and conversations.
import type * as Y from 'yjs'
import { createHttpClient, type HttpClient } from './http.js'
import { DocumentConnection, type ConnectDocumentOptions, type ResourceType } from './document.js'
import { LiveConversation } from './conversation.js'
import { EventStream, type EventStreamOptions } from './sse.js'
import { FilesClient, type FilesOptions } from './files.js'

export interface TandemOptions {
  /** Control's base URL, e.g. `http://127.0.0.1:8080`. */
  controlUrl: string
  /** The relay's base URL, e.g. `ws://127.0.0.1:1999` (default: controlUrl with ws(s):// and port 1999). */
  relayUrl?: string
  /** Called before every request and every connection attempt: the session token or IdP JWT (null when signed out). */
  getSessionToken?: () => string | null | undefined | Promise<string | null | undefined>
  /** fetch implementation (default: the global one). */
  fetch?: typeof fetch
  /** WebSocket implementation for documents (default: the global one; pass `ws` in Node < 22). */
  WebSocket?: new (url: string) => WebSocket
  /** The file transfer queue: concurrency, retries, hashing (see `FilesOptions`). */
  files?: FilesOptions
}

export interface Tandem {
  /** Typed REST calls: `await tandem.api.get('/workspaces')`, `tandem.api.post('/workspaces/{id}/projects', { path: { id }, body: { name } })`. */
  readonly api: HttpClient
  readonly controlUrl: string
  readonly relayUrl: string
  /**
   * Keeps `doc` live in the resource's room: a fresh one-time token per connection attempt,
   * reconnects with backoff and jitter, stops for good on revocation. Call `destroy()` when done.
   */
  connectDocument: (resourceType: ResourceType, resourceId: string, doc: Y.Doc, options?: ConnectDocumentOptions) => DocumentConnection
  /** A conversation's messages kept live from its event stream; `close()` when done. */
  conversation: (conversationId: string, options?: Omit<EventStreamOptions, 'isFinal'>) => LiveConversation
  /** The raw event stream of a conversation (events as sent, `Last-Event-ID` resume); `close()` when done. */
  conversationEvents: (conversationId: string, options?: Omit<EventStreamOptions, 'isFinal'>) => EventStream
  /** Any server-sent event stream of control (e.g. a future workspace or sync stream), authorized and resumable. */
  eventStream: (path: string, options?: EventStreamOptions) => EventStream
  /** File uploads (hashed, deduplicated, resumable) and downloads (hash-checked) through one queue. */
  readonly files: FilesClient
}

export function createTandem (options: TandemOptions): Tandem {
  const controlUrl = options.controlUrl.replace(/\/+$/, '')
  const relayUrl = (options.relayUrl ?? defaultRelayUrl(controlUrl)).replace(/\/+$/, '')
  const api = createHttpClient({ controlUrl, getSessionToken: options.getSessionToken, fetch: options.fetch })
  const transport = {
    relayUrl,
    WebSocket: options.WebSocket,
    requestToken: (resourceType: ResourceType, resourceId: string) =>
      api.post('/collaboration/token', { body: { resourceType, resourceId } })
  }
  return {
    api,
    controlUrl,
    relayUrl,
    connectDocument: (resourceType, resourceId, doc, opts) => new DocumentConnection(transport, resourceType, resourceId, doc, opts),
    conversation: (id, opts) => new LiveConversation(api, id, opts),
    conversationEvents: (id, opts) => new EventStream(
      (headers, signal) => api.fetchRaw(`/conversations/${encodeURIComponent(id)}/events`, { headers, signal }),
      { ...opts, isFinal: (e) => e.event === 'closed' }
    ),
    eventStream: (path, opts) => new EventStream((headers, signal) => api.fetchRaw(path, { headers, signal }), opts),
    files: new FilesClient(api, options.fetch ?? ((input, init) => globalThis.fetch(input, init)), options.files)
  }
}

function defaultRelayUrl (controlUrl: string): string {
  const url = new URL(controlUrl)
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  url.port = '1999'
  url.pathname = ''
  return url.toString()
}
