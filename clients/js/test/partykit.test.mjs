// The stock y-partykit provider (npm `y-partykit`, its client provider, no
// wrapper) against the relay's /parties/main/{roomId}?token= form.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import WebSocket from 'ws'
import YPartyKitProvider from 'y-partykit/provider'
import { startTandem, signup, sharedDoc, clientFor, waitFor, sleep } from './harness.mjs'

let tandem
const uncaught = []
const onUncaught = (err) => { uncaught.push(err) }
before(async () => {
  tandem = await startTandem()
  process.on('uncaughtException', onUncaught)
  process.on('unhandledRejection', onUncaught)
})
after(async () => {
  process.off('uncaughtException', onUncaught)
  process.off('unhandledRejection', onUncaught)
  await tandem?.stop()
})

/** A stock provider with a one-time token in its params (fetched by the app, as y-partykit users do). */
async function stockProvider (user, docId, doc) {
  const { token, roomId } = await clientFor(tandem, user).api.post('/collaboration/token', { body: { resourceType: 'doc', resourceId: docId } })
  const host = new URL(tandem.relayUrl).host
  const provider = new YPartyKitProvider(host, roomId, doc, {
    party: 'main',
    params: { token },
    WebSocketPolyfill: WebSocket,
    // Keep the stock reconnect loop slow: after revocation it retries with the used token (and is refused).
    maxBackoffTime: 2000
  })
  return provider
}

test('the stock y-partykit provider converges with a connectDocument client and sees revocation without an error', async () => {
  const owner = await signup(tandem, 'Owner')
  const guest = await signup(tandem, 'Guest')
  const docId = await sharedDoc(tandem, owner, [guest])
  const ownerConn = clientFor(tandem, owner).connectDocument('doc', docId, new Y.Doc())
  const guestDoc = new Y.Doc()
  const provider = await stockProvider(guest, docId, guestDoc)
  const closes = []
  const warnings = []
  const warn = console.warn
  console.warn = (...args) => { warnings.push(args.join(' ')) }
  provider.on('connection-close', (event) => { closes.push({ code: event?.code, reason: event?.reason }) })
  try {
    assert.match(provider.url, new RegExp(`/parties/main/doc-${docId}\\?`))
    await waitFor(() => provider.synced && ownerConn.synced, 10000, 'synced')
    guestDoc.getText('t').insert(0, 'from partykit ')
    ownerConn.doc.getText('t').insert(0, 'from tandem ')
    await waitFor(() => guestDoc.getText('t').toString() === ownerConn.doc.getText('t').toString() && guestDoc.getText('t').length === 26, 10000, 'convergence')
    provider.awareness.setLocalStateField('user', { name: 'Guest' })
    await waitFor(() => [...ownerConn.awareness.getStates().values()].some((s) => s.user?.name === 'Guest'), 10000, 'awareness')

    await clientFor(tandem, owner).api.delete('/documents/{id}/members/{userId}', { path: { id: docId, userId: guest.id } })
    await waitFor(() => closes.length > 0, 5000, 'the close')
    assert.equal(closes[0].code, 1008)
    assert.equal(closes[0].reason, 'AUTH_FORBIDDEN')
    // The y-protocols auth message reached the provider's permission-denied handler (it warns).
    assert.ok(warnings.some((w) => /Permission denied/.test(w)), warnings.join('\n'))
    assert.equal(provider.synced, false)
    // Its edits no longer reach the room.
    guestDoc.getText('t').insert(0, 'after revocation ')
    await sleep(500)
    assert.ok(!ownerConn.doc.getText('t').toString().includes('after revocation'))
    assert.deepEqual(uncaught, [], 'no error thrown in the client')
  } finally {
    console.warn = warn
    provider.destroy()
    provider.awareness.destroy() // the stock provider leaves its awareness timer running
    ownerConn.destroy()
  }
})
