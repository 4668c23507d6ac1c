// Connects a Y.Doc to its Tandem room with a stock y-websocket provider:
// a fresh one-time token from control before every connection attempt, the
// relay's JSON text notices kept away from y-websocket, and revocation (the
// notice, close 1008, or a token request answered 403/404) final: no more
// token requests, no reconnects. When the browser goes offline the socket is
// dropped at once (a dead network may not close it for a long time) and
// reconnected when it is back; edits made meanwhile stay in the Y.Doc and
// sync then.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { call, ApiError } from './api'
import { endpoints } from './config'

export type Status = 'connecting' | 'connected' | 'disconnected' | 'revoked'

export interface Connection {
  provider: WebsocketProvider
  destroy: () => void
}

export function connectDocument (
  resourceId: string,
  doc: Y.Doc,
  onStatus: (status: Status, reason?: string) => void
): Connection {
  const { relayUrl } = endpoints()
  let stopped = false
  let attempts = 0
  let timer: ReturnType<typeof setTimeout> | undefined

  const revoke = (reason: string): void => {
    if (stopped) return
    stopped = true
    clearTimeout(timer)
    provider.shouldConnect = false
    provider.disconnect()
    onStatus('revoked', reason)
  }

  // Text frames are Tandem notices; y-websocket understands binary only.
  class TandemSocket extends WebSocket {
    set onmessage (handler: ((ev: MessageEvent) => void) | null) {
      super.onmessage = handler === null
        ? null
        : (event: MessageEvent) => {
            if (typeof event.data !== 'string') { handler(event); return }
            try {
              const notice = JSON.parse(event.data) as { type?: string, reason?: string }
              if (notice.type === 'permission_revoked') revoke(notice.reason ?? 'access revoked')
            } catch { /* not a notice */ }
          }
    }

    get onmessage (): ((ev: MessageEvent) => void) | null {
      return super.onmessage as ((ev: MessageEvent) => void) | null
    }
  }

  const provider = new WebsocketProvider(relayUrl, `doc-${resourceId}`, doc, {
    connect: false,
    WebSocketPolyfill: TandemSocket as unknown as typeof WebSocket,
    params: {}
  })

  const retry = (): void => {
    if (stopped || !navigator.onLine) return // offline: the 'online' listener reconnects
    attempts++
    const base = Math.min(100 * 2 ** attempts, 3000)
    timer = setTimeout(() => { void connect() }, base / 2 + Math.random() * base / 2)
  }

  const connect = async (): Promise<void> => {
    if (stopped) return
    onStatus('connecting')
    try {
      const { token } = await call<{ token: string }>('POST', '/collaboration/token', {
        resourceType: 'doc', resourceId
      })
      if (stopped) return
      provider.params = { token }
      provider.connect()
    } catch (err) {
      if (err instanceof ApiError && (err.status === 403 || err.status === 404)) {
        revoke('you no longer have access to this document')
        return
      }
      onStatus('disconnected')
      retry()
    }
  }

  // y-websocket would reconnect with the same URL (a spent token): take over.
  provider.on('connection-close', (event) => {
    provider.shouldConnect = false
    if (stopped) return
    if (event?.code === 1008) { revoke('your access to this document was revoked'); return }
    onStatus('disconnected')
    retry()
  })
  provider.on('status', ({ status }) => { if (status === 'connected' && !stopped) onStatus('connected') })
  provider.on('sync', (synced: boolean) => { if (synced) attempts = 0 })

  const offline = (): void => { if (!stopped) { clearTimeout(timer); provider.disconnect() } }
  const online = (): void => {
    if (stopped || provider.wsconnected || provider.wsconnecting) return
    clearTimeout(timer)
    attempts = 0
    void connect()
  }
  window.addEventListener('offline', offline)
  window.addEventListener('online', online)
  void connect()

  return {
    provider,
    destroy () {
      stopped = true
      clearTimeout(timer)
      window.removeEventListener('offline', offline)
      window.removeEventListener('online', online)
      provider.destroy()
      provider.awareness.destroy()
    }
  }
}
