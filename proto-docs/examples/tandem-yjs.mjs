// Connecting a Yjs document to Tandem from a browser or Node app: the
// equivalent of the plans' `useYjsProvider` hook, framework-free.
//
//   const session = connectTandem({ controlUrl, relayUrl, sessionToken,
//                                   resourceType: 'doc', resourceId, doc,
//                                   onPermissionRevoked: (reason) => ... })
//   ...
//   session.destroy()
//
// What it does:
// - fetches a one-time collaboration token from control before every
//   connection attempt (tokens work once, so a reconnect needs a new one);
// - connects an unmodified y-websocket `WebsocketProvider` to the relay;
// - on `permission_revoked` (the y-protocols auth message "permission
//   denied" whose reason is the JSON notice, or close 1008), stops
//   reconnecting for good and tells the app;
// - treats a refused token request (403/404: access lost) the same way.
import { WebsocketProvider } from 'y-websocket'
import * as decoding from 'lib0/decoding'

// The reason of a y-protocols auth message "permission denied" ([2][0][varString]), else null.
const permissionDenied = (data) => {
  const bytes = new Uint8Array(data)
  if (bytes[0] !== 2 || bytes[1] !== 0) return null
  try { return decoding.readVarString(decoding.createDecoder(bytes.subarray(2))) } catch { return null }
}

// The reason inside a `permission_revoked` notice (JSON), or the raw text.
const noticeReason = (text) => {
  try {
    const notice = JSON.parse(text)
    if (notice && notice.type === 'permission_revoked') return notice.reason
  } catch {}
  return text
}

export function connectTandem ({
  controlUrl,
  relayUrl,
  sessionToken,
  resourceType,
  resourceId,
  doc,
  onPermissionRevoked = () => {},
  onError = () => {},
  WebSocketImpl = globalThis.WebSocket,
  fetchImpl = globalThis.fetch,
  partykitPath = false,
  maxBackoffMs = 2500
}) {
  const roomId = `${resourceType}-${resourceId}`
  let stopped = false
  let attempts = 0
  let tokenRequests = 0

  const stop = () => {
    stopped = true
    provider.shouldConnect = false
    provider.disconnect()
  }

  const revoke = (reason) => {
    if (stopped) return
    stop()
    onPermissionRevoked(reason)
  }

  // A WebSocket that reports the revocation notice to the app. The relay
  // sends it as the auth message (y-websocket would only log it); text frames
  // never reach y-websocket (the relay sends none on this path anyway).
  class TandemSocket extends WebSocketImpl {
    set onmessage (handler) {
      super.onmessage = handler == null
        ? null
        : (event) => {
            if (typeof event.data === 'string') {
              const reason = noticeReason(event.data)
              if (reason !== event.data) revoke(reason)
              return
            }
            const denied = permissionDenied(event.data)
            if (denied !== null) return revoke(noticeReason(denied))
            return handler(event)
          }
    }

    get onmessage () { return super.onmessage }
  }

  const fetchToken = async () => {
    tokenRequests++
    const res = await fetchImpl(`${controlUrl}/collaboration/token`, {
      method: 'POST',
      headers: { authorization: `Bearer ${sessionToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ resourceType, resourceId })
    })
    if (res.status === 403 || res.status === 404) return { lost: true }
    if (!res.ok) throw new Error(`collaboration token request failed: HTTP ${res.status}`)
    return { token: (await res.json()).token }
  }

  const provider = new WebsocketProvider(
    partykitPath ? `${relayUrl}/parties/main` : relayUrl,
    roomId,
    doc,
    { connect: false, WebSocketPolyfill: TandemSocket, params: {}, maxBackoffTime: maxBackoffMs }
  )

  // Connects with a fresh token; on failure, retries with exponential backoff.
  const connect = async () => {
    if (stopped) return
    try {
      const { token, lost } = await fetchToken()
      if (lost) return revoke('access to this resource was removed')
      if (stopped) return
      provider.params = { token }
      provider.connect()
    } catch (err) {
      onError(err)
      attempts++
      setTimeout(connect, Math.min(100 * 2 ** attempts, maxBackoffMs))
    }
  }

  // y-websocket would reconnect with the old URL (and its used token): take
  // over, and reconnect with a new token after a backoff.
  provider.on('connection-close', (event) => {
    provider.shouldConnect = false
    if (event && event.code === 1008) revoke(event.reason || 'access revoked')
    if (stopped) return
    attempts++
    setTimeout(connect, Math.min(100 * 2 ** attempts, maxBackoffMs))
  })
  provider.on('sync', (synced) => { if (synced) attempts = 0 })

  connect()

  return {
    provider,
    roomId,
    get stopped () { return stopped },
    get tokenRequests () { return tokenRequests },
    destroy () {
      stop()
      provider.destroy()
      provider.awareness.destroy() // the provider made it; its timer would outlive us
    }
  }
}
