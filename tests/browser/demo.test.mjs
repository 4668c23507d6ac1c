// The demo app in headless Chromium, served from another origin than
// control: two users sign up, share a document by email, type into it and
// converge; see each other's cursors; chat with a streamed reply; one goes
// offline, edits, comes back and converges; the owner revokes the other,
// whose page says so at once and stops asking for tokens or reconnecting.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { launchChromium, openUser, screenshot, startStatic, startTandem, timed } from './harness.mjs'

// The editor's text, without the other users' caret widgets.
const text = (page) => page.$eval('.cm-content', (el) => {
  const copy = el.cloneNode(true)
  copy.querySelectorAll('.cm-ySelectionCaret').forEach((n) => n.remove())
  return [...copy.querySelectorAll('.cm-line')].map((l) => l.textContent).join('\n')
})

async function signUp (page, url, name, email) {
  await page.goto(url)
  await page.click('[data-testid=auth-switch]')
  await page.type('input[name=displayName]', name)
  await page.type('input[name=email]', email)
  await page.type('input[name=password]', 'password123')
  await page.click('[data-testid=auth-submit]')
  await page.waitForSelector('[data-testid=who]')
}

async function typeAt (page, where, s) {
  await page.click('.cm-content')
  await page.keyboard.down('Control')
  await page.keyboard.press(where)
  await page.keyboard.up('Control')
  await page.keyboard.type(s)
}
const typeAtEnd = (page, s) => typeAt(page, 'End', s)

describe('demo app in Chromium', () => {
  let tandem, site, chromium, alice, bob, docUrl
  const stamp = Date.now()
  // Different domains: Bob's access must come from the share alone, not from one org.
  const bobEmail = `bob-${stamp}@bob.example.com`

  // Both editors show the same text, with every one of `parts`, within `ms`.
  async function converged (parts, ms) {
    const deadline = performance.now() + ms
    for (;;) {
      const [a, b] = await Promise.all([text(alice.page), text(bob.page)])
      if (a === b && parts.every((p) => a.includes(p))) return
      assert.ok(performance.now() < deadline, `not converged after ${ms} ms: ${JSON.stringify([a, b])}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }

  before(async () => {
    tandem = await startTandem()
    site = await startStatic()
    chromium = await launchChromium()
    alice = await openUser(chromium.browser, 'alice')
    bob = await openUser(chromium.browser, 'bob')
  })

  after(async () => {
    await chromium?.close()
    await site?.stop()
    await tandem?.stop()
  })

  it('two users sign up, share a document by email, type at once and converge within a second', async () => {
    const start = `${site.origin}/?control=${encodeURIComponent(tandem.controlUrl)}&relay=${encodeURIComponent(tandem.relayUrl)}`
    await signUp(alice.page, start, 'Alice', `alice-${stamp}@alice.example.com`)
    await signUp(bob.page, start, 'Bob', bobEmail)

    // Alice makes a project and a document in her personal workspace.
    await alice.page.waitForFunction(() => [...document.querySelectorAll('[data-testid=workspace] h2')].some((h) => h.textContent.includes('personal')))
    const personal = await alice.page.evaluateHandle(() => [...document.querySelectorAll('[data-testid=workspace]')].find((w) => w.querySelector('h2').textContent.includes('personal')))
    await (await personal.$('[data-testid=project-name]')).type('Launch plan')
    await (await personal.$('[data-testid=project-create]')).click()
    await personal.waitForSelector('[data-testid=doc-name]')
    await (await personal.$('[data-testid=doc-name]')).type('Press release')
    await (await personal.$('[data-testid=doc-create]')).click()
    await alice.page.waitForSelector('[data-testid=status].connected')
    docUrl = alice.page.url()
    assert.match(docUrl, /#\/doc\/[\w-]+$/)

    // …shares it with Bob by email, once its conversation exists.
    await alice.page.waitForSelector('[data-testid=chat]')
    await alice.page.type('[data-testid=share-email]', bobEmail)
    await alice.page.click('[data-testid=share-submit]')
    await alice.page.waitForFunction((e) => document.querySelector(`[data-testid="revoke-${e}"]`) !== null, {}, bobEmail)

    await bob.page.goto(docUrl.replace(/^.*#/, `${site.origin}/#`))
    await bob.page.waitForSelector('[data-testid=status].connected')

    // Both type at once, Alice at the start, Bob at the end.
    await typeAtEnd(alice.page, '\n')
    await converged(['\n'], 2000)
    await Promise.all([typeAt(alice.page, 'Home', 'Alice writes.'), typeAtEnd(bob.page, 'Bob writes.')])
    const took = await timed(() => converged(['Alice writes.', 'Bob writes.'], 1000))
    assert.ok(took < 1000, `converged after ${took} ms`)
  })

  it('each sees the other\'s cursor and name', async () => {
    await alice.page.waitForFunction(() => [...document.querySelectorAll('.cm-ySelectionInfo')].some((e) => e.textContent === 'Bob'), { timeout: 2000 })
    await bob.page.waitForFunction(() => [...document.querySelectorAll('.cm-ySelectionInfo')].some((e) => e.textContent === 'Alice'), { timeout: 2000 })
    assert.match(await alice.page.$eval('[data-testid=peers]', (e) => e.textContent), /Bob/)
    assert.match(await bob.page.$eval('[data-testid=peers]', (e) => e.textContent), /Alice/)
    await screenshot(alice.page, 'two-users-alice')
    await screenshot(bob.page, 'two-users-bob')
  })

  it('a chat message and a streamed reply appear for both', async () => {
    await bob.page.waitForSelector('[data-testid=chat-input]')
    await alice.page.type('[data-testid=chat-input]', 'Shall we ship it?')
    await alice.page.click('[data-testid=chat-send]')
    for (const u of [alice, bob]) {
      await u.page.waitForFunction(() => [...document.querySelectorAll('[data-testid=message]')].some((m) => m.textContent.includes('Shall we ship it?')), { timeout: 2000 })
    }
    await bob.page.click('[data-testid=chat-stream]')
    // Alice sees the reply while it is still being written, then finished.
    await alice.page.waitForSelector('.message.assistant.streaming', { timeout: 2000 })
    for (const u of [alice, bob]) {
      await u.page.waitForFunction(() => [...document.querySelectorAll('.message.assistant.idle')].some((m) => m.textContent.includes('as it is written.')), { timeout: 10000 })
    }
    await screenshot(bob.page, 'chat-bob')
    await screenshot(alice.page, 'chat-alice')
  })

  it('goes offline, edits, comes back and converges', async () => {
    const offline = (on) => bob.cdp.send('Network.emulateNetworkConditions', { offline: on, latency: 0, downloadThroughput: -1, uploadThroughput: -1 })
    await offline(true)
    try {
      await bob.page.waitForSelector('[data-testid=status]:not(.connected)', { timeout: 2000 })
      await typeAtEnd(bob.page, ' Offline edit.')
      await typeAt(alice.page, 'Home', 'Online edit. ')
      await new Promise((resolve) => setTimeout(resolve, 300))
      assert.ok(!(await text(alice.page)).includes('Offline edit.'), 'the offline edit must not arrive while offline')
      assert.ok(!(await text(bob.page)).includes('Online edit.'), 'the online edit must not arrive while offline')
      await screenshot(bob.page, 'offline-bob')
    } finally {
      await offline(false)
    }
    await converged(['Offline edit.', 'Online edit.'], 10000)
  })

  it('the owner revokes the other, whose page says so within a second and stops for good', async () => {
    await bob.page.waitForSelector('[data-testid=status].connected')
    const tokensBefore = bob.watch.tokenRequests
    const socketsBefore = bob.watch.sockets
    const revoked = bob.page.waitForSelector('[data-testid=revoked]', { timeout: 3000 })
    const started = performance.now()
    await alice.page.click(`[data-testid="revoke-${bobEmail}"]`)
    await revoked.catch(async (err) => {
      const status = await bob.page.$eval('[data-testid=status]', (e) => e.textContent)
      throw new Error(`${err.message}; Bob's status: ${status}, token requests ${bob.watch.tokenRequests - tokensBefore}, sockets ${bob.watch.sockets - socketsBefore}`)
    })
    const took = performance.now() - started
    assert.ok(took < 1000, `revocation shown after ${took} ms`)
    await screenshot(bob.page, 'revoked-bob')
    // Well past the longest reconnect backoff: no token request, no socket.
    await new Promise((resolve) => setTimeout(resolve, 1500))
    assert.equal(bob.watch.tokenRequests, tokensBefore, 'token requests after revocation')
    assert.equal(bob.watch.sockets, socketsBefore, 'sockets opened after revocation')
    assert.equal(await bob.page.$eval('[data-testid=status]', (e) => e.textContent), 'revoked')
  })

  it('no page errors', () => {
    assert.deepEqual([...alice.watch.pageErrors, ...bob.watch.pageErrors].map(String), [])
  })
})
