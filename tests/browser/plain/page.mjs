// A page that uses Tandem with nothing of Tandem's: stock npm `yjs` and
// `y-websocket`, plain `fetch`. The test calls window.join(...).
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

window.join = async ({ controlUrl, relayUrl, email, password, docId }) => {
  const post = async (path, token, body) => {
    const res = await fetch(controlUrl + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body)
    })
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`)
    return res.json()
  }
  const { sessionToken } = await post('/auth/login', null, { email, password })
  const { token, roomId } = await post('/collaboration/token', sessionToken, { resourceType: 'doc', resourceId: docId })
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(relayUrl, roomId, doc, { params: { token } })
  window.closes = []
  // What a stock app adds so that it stops retrying once access is revoked:
  provider.on('connection-close', (event) => {
    window.closes.push(event?.code)
    if (event?.code === 1008) provider.shouldConnect = false
  })
  window.doc = doc
  window.provider = provider
  await new Promise((resolve) => provider.once('sync', resolve))
}
