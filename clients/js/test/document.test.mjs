// connectDocument against the real relay and control: convergence, a fresh
// token per attempt, revocation and refusal stop for good, the y-partykit
// URL form.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import { startTandem, signup, sharedDoc, clientFor, waitFor, sleep } from './harness.mjs'

let tandem
before(async () => { tandem = await startTandem() })
after(async () => { await tandem?.stop() })

const fast = { backoff: { initialMs: 50, maxMs: 200 } }

test('two clients converge through connectDocument, awareness included', async () => {
  const alice = await signup(tandem, 'Alice')
  const bob = await signup(tandem, 'Bob')
  const docId = await sharedDoc(tandem, alice, [bob])
  const a = clientFor(tandem, alice).connectDocument('doc', docId, new Y.Doc())
  const b = clientFor(tandem, bob).connectDocument('doc', docId, new Y.Doc())
  const seen = []
  a.on('status', (s) => seen.push(s))
  try {
    await waitFor(() => a.synced && b.synced, 10000, 'both synced')
    assert.equal(a.status, 'connected')
    assert.deepEqual(seen, ['connected'])
    assert.equal(a.roomId, `doc-${docId}`)
    a.doc.getText('t').insert(0, 'hello ')
    b.doc.getText('t').insert(0, 'world ')
    a.doc.getMap('m').set('a', 1)
    b.doc.getMap('m').set('b', 2)
    await waitFor(() => a.doc.getText('t').toString() === b.doc.getText('t').toString() && a.doc.getText('t').length === 12 &&
      a.doc.getMap('m').size === 2 && b.doc.getMap('m').size === 2, 10000, 'convergence')
    a.awareness.setLocalStateField('user', { name: 'Alice' })
    await waitFor(() => [...b.awareness.getStates().values()].some((s) => s.user?.name === 'Alice'), 10000, 'awareness')
    // A late joiner gets everything on sync.
    const c = clientFor(tandem, alice).connectDocument('doc', docId, new Y.Doc())
    try {
      await waitFor(() => c.synced, 10000, 'late joiner synced')
      assert.equal(c.doc.getText('t').toString(), a.doc.getText('t').toString())
    } finally { c.destroy() }
  } finally {
    a.destroy(); b.destroy()
  }
})

test('every connection attempt uses a new token', async () => {
  const owner = await signup(tandem, 'Owner')
  const docId = await sharedDoc(tandem, owner)
  const client = clientFor(tandem, owner)
  // Without resume tickets (tickets.test.mjs covers rejoining with one).
  const conn = client.connectDocument('doc', docId, new Y.Doc(), { ...fast, resumeTickets: false })
  const other = clientFor(tandem, owner).connectDocument('doc', docId, new Y.Doc())
  try {
    await waitFor(() => conn.synced && other.synced, 10000, 'synced')
    assert.equal(client.tokenRequests, 1)
    for (let drop = 1; drop <= 3; drop++) {
      conn.ws.close() // the network drops (the socket is private; tests may reach in)
      await waitFor(() => conn.status !== 'connected', 5000, 'noticed the drop')
      await waitFor(() => conn.synced, 10000, `resynced after drop ${drop}`)
      assert.equal(client.tokenRequests, 1 + drop, 'one token request per attempt')
      assert.equal(conn.tokenRequests, 1 + drop)
    }
    other.doc.getText('t').insert(0, 'after reconnects')
    await waitFor(() => conn.doc.getText('t').toString() === 'after reconnects', 10000, 'edit after reconnect')
  } finally {
    conn.destroy(); other.destroy()
  }
})

test('a relay that refuses the socket is retried with a new token each time, with backoff', async () => {
  const owner = await signup(tandem, 'Retry')
  const docId = await sharedDoc(tandem, owner)
  // A relay URL where nothing listens: every attempt fails before the upgrade.
  const client = clientFor(tandem, owner, { relayUrl: 'ws://127.0.0.1:9' })
  const conn = client.connectDocument('doc', docId, new Y.Doc(), { backoff: { initialMs: 40, maxMs: 160 } })
  try {
    await waitFor(() => client.tokenRequests >= 4, 5000, 'several attempts')
    assert.notEqual(conn.status, 'connected')
    assert.notEqual(conn.status, 'revoked')
    assert.notEqual(conn.status, 'failed')
  } finally {
    conn.destroy()
  }
  const after = client.tokenRequests
  await sleep(400)
  assert.equal(client.tokenRequests, after, 'destroy stops the retries')
})

test('revocation stops reconnects for good and emits revoked', async () => {
  const owner = await signup(tandem, 'Owner')
  const guest = await signup(tandem, 'Guest')
  const docId = await sharedDoc(tandem, owner, [guest])
  const guestClient = clientFor(tandem, guest)
  const conn = guestClient.connectDocument('doc', docId, new Y.Doc(), fast)
  const revocations = []
  conn.on('revoked', (r) => revocations.push(r))
  try {
    await waitFor(() => conn.synced, 10000, 'synced')
    const ownerApi = clientFor(tandem, owner).api
    await ownerApi.delete('/documents/{id}/members/{userId}', { path: { id: docId, userId: guest.id } })
    await waitFor(() => revocations.length === 1, 5000, 'revoked event')
    assert.equal(conn.status, 'revoked')
    assert.equal(conn.revoked, revocations[0])
    assert.equal(revocations[0].source, 'auth-message', 'the relay\'s y-protocols auth message comes first')
    assert.match(revocations[0].reason, /revoked|AUTH_FORBIDDEN/i)
    const requests = guestClient.tokenRequests
    assert.equal(requests, 1)
    await sleep(1500)
    assert.equal(guestClient.tokenRequests, requests, 'no token requests after revocation')
    assert.equal(conn.status, 'revoked')
    assert.equal(revocations.length, 1)
  } finally {
    conn.destroy()
  }
})

test('a 404 at token time stops for good', async () => {
  const owner = await signup(tandem, 'Owner')
  const stranger = await signup(tandem, 'Stranger')
  const docId = await sharedDoc(tandem, owner)
  const client = clientFor(tandem, stranger)
  const conn = client.connectDocument('doc', docId, new Y.Doc(), fast)
  const revocations = []
  conn.on('revoked', (r) => revocations.push(r))
  try {
    await waitFor(() => conn.status === 'revoked', 5000, 'revoked')
    assert.equal(revocations.length, 1)
    assert.equal(revocations[0].source, 'token')
    assert.equal(revocations[0].error.status, 404)
    assert.equal(revocations[0].error.code, 'not_found')
    await sleep(500)
    assert.equal(client.tokenRequests, 1, 'no retry after a 404')
  } finally {
    conn.destroy()
  }
})

test('a deleted document: the open connection is revoked, a new one is refused at token time', async () => {
  const owner = await signup(tandem, 'Deleter')
  const docId = await sharedDoc(tandem, owner)
  const client = clientFor(tandem, owner)
  const conn = client.connectDocument('doc', docId, new Y.Doc(), fast)
  try {
    await waitFor(() => conn.synced, 10000, 'synced')
    await client.api.delete('/documents/{id}', { path: { id: docId } })
    await waitFor(() => conn.status === 'revoked', 5000, 'revoked after deletion')
    const again = client.connectDocument('doc', docId, new Y.Doc(), fast)
    await waitFor(() => again.status === 'revoked', 5000, 'refused')
    assert.equal(again.revoked.source, 'token')
    again.destroy()
  } finally {
    conn.destroy()
  }
})

test('the y-partykit URL form converges with the y-websocket form', async () => {
  const owner = await signup(tandem, 'Party')
  const docId = await sharedDoc(tandem, owner)
  let url = null
  class SpySocket extends (await import('ws')).default {
    constructor (u) { super(u); url = u }
  }
  const p = clientFor(tandem, owner, { WebSocket: SpySocket }).connectDocument('doc', docId, new Y.Doc(), { urlForm: 'y-partykit' })
  const w = clientFor(tandem, owner).connectDocument('doc', docId, new Y.Doc())
  try {
    await waitFor(() => p.synced && w.synced, 10000, 'synced')
    assert.match(url, new RegExp(`/parties/main/doc-${docId}\\?token=`))
    p.doc.getText('t').insert(0, 'partykit')
    await waitFor(() => w.doc.getText('t').toString() === 'partykit', 10000, 'edit via the partykit path')
  } finally {
    p.destroy(); w.destroy()
  }
})

test('disconnect() stops, reconnect() comes back with a new token', async () => {
  const owner = await signup(tandem, 'Toggle')
  const docId = await sharedDoc(tandem, owner)
  const client = clientFor(tandem, owner)
  const conn = client.connectDocument('doc', docId, new Y.Doc(), fast)
  try {
    await waitFor(() => conn.synced, 10000, 'synced')
    conn.disconnect()
    assert.equal(conn.status, 'disconnected')
    await sleep(300)
    assert.equal(client.tokenRequests, 1)
    conn.reconnect()
    await waitFor(() => conn.synced, 10000, 'resynced')
    assert.equal(client.tokenRequests, 2)
  } finally {
    conn.destroy()
  }
})
