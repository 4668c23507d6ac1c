// Real yjs clients (y-websocket's WebsocketProvider, through the example in
// proto-docs/examples/tandem-yjs.mjs) against a real relay and control.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { connectTandem } from '../../proto-docs/examples/tandem-yjs.mjs'
import { startTandem, api, waitFor } from './harness.mjs'

let tandem, http
before(async () => { tandem = await startTandem(); http = api(tandem.controlUrl) })
after(async () => { await tandem.stop() })

const open = (user, docId, extra = {}) => {
  const doc = new Y.Doc()
  const session = connectTandem({
    controlUrl: tandem.controlUrl,
    relayUrl: tandem.relayUrl,
    sessionToken: user.token,
    resourceType: 'doc',
    resourceId: docId,
    doc,
    WebSocketImpl: WebSocket,
    ...extra
  })
  return { doc, session }
}

test('two providers editing a Y.Text and a Y.Map converge', async () => {
  const alice = await http.signup('alice@interop.dev', 'Alice')
  const bob = await http.signup('bob@interop.dev', 'Bob')
  const docId = await http.teamDoc(alice)
  const a = open(alice, docId)
  const b = open(bob, docId)
  try {
    await waitFor(() => a.session.provider.synced && b.session.provider.synced, 10000, 'sync')
    a.doc.getText('t').insert(0, 'hello ')
    b.doc.getText('t').insert(0, 'world ')
    a.doc.getMap('m').set('a', 1)
    b.doc.getMap('m').set('b', 2)
    b.doc.getMap('m').set('shared', 'from-b')
    a.doc.getMap('m').set('shared', 'from-a')
    const same = () => a.doc.getText('t').toString() === b.doc.getText('t').toString() &&
      JSON.stringify(a.doc.getMap('m').toJSON()) === JSON.stringify(b.doc.getMap('m').toJSON()) &&
      a.doc.getMap('m').size === 3 && a.doc.getText('t').length === 12
    await waitFor(same, 10000, 'convergence')
    assert.equal(a.doc.getText('t').toString().length, 12)
    assert.deepEqual(Object.keys(a.doc.getMap('m').toJSON()).sort(), ['a', 'b', 'shared'])
    // Awareness crosses too.
    a.session.provider.awareness.setLocalStateField('user', { name: 'Alice' })
    await waitFor(() => [...b.session.provider.awareness.getStates().values()].some((s) => s.user?.name === 'Alice'), 10000, 'awareness')
  } finally {
    a.session.destroy(); b.session.destroy()
  }
})

test('a revoked provider gets permission_revoked and stops reconnecting', async () => {
  const owner = await http.signup('owner@interop-revoke.dev', 'Owner')
  const guest = await http.signup('guest@gmail.com', 'Guest')
  const docId = await http.teamDoc(owner)
  await http.share(owner, docId, guest, 'editor')
  let revokedWith = null
  const g = open(guest, docId, { onPermissionRevoked: (reason) => { revokedWith = reason } })
  try {
    await waitFor(() => g.session.provider.synced, 10000, 'sync')
    await new Promise((resolve) => setTimeout(resolve, 300))
    await http.unshare(owner, docId, guest)
    await waitFor(() => revokedWith !== null, 5000, 'permission_revoked')
    assert.match(revokedWith, /revoked/)
    assert.equal(g.session.stopped, true)
    const requests = g.session.tokenRequests
    await new Promise((resolve) => setTimeout(resolve, 1500))
    assert.equal(g.session.tokenRequests, requests, 'no reconnect attempts after revocation')
    assert.equal(g.session.provider.wsconnected, false)
    assert.equal(g.session.provider.shouldConnect, false)
  } finally {
    g.session.destroy()
  }
})

test('a stock y-websocket provider is told of revocation (auth message, 1008) without any error', async () => {
  const owner = await http.signup('owner@interop-stock.dev', 'Owner')
  const guest = await http.signup('guest2@gmail.com', 'Guest')
  const docId = await http.teamDoc(owner)
  await http.share(owner, docId, guest, 'editor')
  const errors = []
  const onError = (err) => errors.push(err)
  process.on('uncaughtException', onError)
  const warnings = []
  const warn = console.warn
  console.warn = (...args) => { warnings.push(args.join(' ')) }
  const doc = new Y.Doc()
  // No wrapper: the stock provider, told not to reconnect on 1008.
  const provider = new WebsocketProvider(tandem.relayUrl, `doc-${docId}`, doc, {
    params: { token: await http.collabToken(guest, docId) },
    WebSocketPolyfill: WebSocket,
    shouldReconnect: (event) => event.code !== 1008
  })
  let closed = null
  provider.on('closed', (event) => { closed = event })
  try {
    await waitFor(() => provider.synced, 10000, 'sync')
    await new Promise((resolve) => setTimeout(resolve, 300))
    await http.unshare(owner, docId, guest)
    await waitFor(() => closed !== null, 5000, 'closed')
    assert.equal(closed.code, 1008)
    assert.equal(closed.reason, 'AUTH_FORBIDDEN')
    const denied = warnings.find((w) => w.startsWith('Permission denied'))
    assert.ok(denied, `permission-denied handler ran: ${JSON.stringify(warnings)}`)
    assert.match(denied, /"type":"permission_revoked"/)
    await new Promise((resolve) => setTimeout(resolve, 500))
    assert.equal(provider.shouldConnect, false)
    assert.equal(provider.wsconnected, false)
    assert.deepEqual(errors, [], 'no error thrown')
  } finally {
    console.warn = warn
    process.off('uncaughtException', onError)
    provider.destroy()
    provider.awareness.destroy()
  }
})

test('every reconnect fetches a fresh token', async () => {
  const owner = await http.signup('owner@interop-reconnect.dev', 'Owner')
  const docId = await http.teamDoc(owner)
  const a = open(owner, docId, { maxBackoffMs: 200 })
  const b = open(owner, docId)
  try {
    await waitFor(() => a.session.provider.synced && b.session.provider.synced, 10000, 'sync')
    assert.equal(a.session.tokenRequests, 1)
    a.session.provider.ws.close() // the network drops
    await waitFor(() => a.session.tokenRequests === 2 && a.session.provider.synced, 10000, 'reconnect')
    b.doc.getText('t').insert(0, 'after reconnect')
    await waitFor(() => a.doc.getText('t').toString() === 'after reconnect', 10000, 'edit after reconnect')
  } finally {
    a.session.destroy(); b.session.destroy()
  }
})

test('the y-partykit URL form works', async () => {
  const owner = await http.signup('owner@interop-party.dev', 'Owner')
  const docId = await http.teamDoc(owner)
  const p = open(owner, docId, { partykitPath: true })
  const w = open(owner, docId)
  try {
    assert.match(p.session.provider.url, /\/parties\/main\/doc-/)
    await waitFor(() => p.session.provider.synced && w.session.provider.synced, 10000, 'sync')
    p.doc.getText('t').insert(0, 'partykit')
    await waitFor(() => w.doc.getText('t').toString() === 'partykit', 10000, 'edit via partykit path')
  } finally {
    p.session.destroy(); w.session.destroy()
  }
})
