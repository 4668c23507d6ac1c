// The "must show": a page on another origin, built from stock npm
// `yjs` + `y-websocket` and plain `fetch` (no Tandem package), signs in, gets
// a token, converges with a Node client (yjs + y-websocket here), and, once
// revoked, is closed with 1008 within a second without a page error.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import { api, launchChromium, openUser, screenshot, startStatic, startTandem, waitFor } from './harness.mjs'

describe('stock yjs + y-websocket page in Chromium', () => {
  let tandem, site, chromium, user, control, owner, guest, docId, node

  before(async () => {
    tandem = await startTandem()
    site = await startStatic()
    chromium = await launchChromium()
    user = await openUser(chromium.browser, 'guest')
    control = api(tandem.controlUrl)
    owner = await control.signup(`owner-${Date.now()}@owner.example.com`, 'Owner')
    guest = await control.signup(`guest-${Date.now()}@guest.example.com`, 'Guest')
    docId = await control.personalDoc(owner)
    await control.call('POST', `/documents/${docId}/members`, owner.token, { userId: guest.id, role: 'editor' })
  })

  after(async () => {
    node?.provider.destroy()
    node?.provider.awareness.destroy() // the provider made it; its timer would outlive the test
    await chromium?.close()
    await site?.stop()
    await tandem?.stop()
  })

  it('signs in, gets a token and converges with a Node client', async () => {
    await user.page.goto(`${site.origin}/plain/`)
    await user.page.waitForFunction(() => typeof window.join === 'function')
    await user.page.evaluate((args) => window.join(args), {
      controlUrl: tandem.controlUrl, relayUrl: tandem.relayUrl, email: guest.email, password: guest.password, docId
    })
    assert.equal(user.watch.tokenRequests, 1)

    const { token, roomId } = await control.call('POST', '/collaboration/token', owner.token, { resourceType: 'doc', resourceId: docId })
    const doc = new Y.Doc()
    node = { doc, provider: new WebsocketProvider(tandem.relayUrl, roomId, doc, { params: { token }, WebSocketPolyfill: WebSocket }) }
    node.provider.on('connection-close', (e) => { if (e?.code === 1008) node.provider.shouldConnect = false })
    await new Promise((resolve) => node.provider.once('sync', resolve))

    await user.page.evaluate(() => window.doc.getText('t').insert(0, 'from the page. '))
    doc.getText('t').insert(0, 'from node. ')
    await waitFor(() => doc.getText('t').toString().includes('from the page.'), 1000, 'the page\'s edit in Node')
    await user.page.waitForFunction(() => window.doc.getText('t').toString().includes('from node.'), { timeout: 1000 })
    assert.equal(await user.page.evaluate(() => window.doc.getText('t').toString()), doc.getText('t').toString())
  })

  it('is closed with 1008 within a second of revocation, with no page error', async () => {
    const started = performance.now()
    await control.call('DELETE', `/documents/${docId}/members/${guest.id}`, owner.token)
    await user.page.waitForFunction(() => window.closes.includes(1008), { timeout: 1000 })
    const took = performance.now() - started
    assert.ok(took < 1000, `closed after ${took} ms`)
    await new Promise((resolve) => setTimeout(resolve, 500))
    assert.deepEqual(user.watch.pageErrors.map(String), [])
    assert.equal(user.watch.tokenRequests, 1)
    assert.equal(user.watch.sockets, 1, 'the page did not reconnect')
    await screenshot(user.page, 'stock-page-revoked')
  })
})
