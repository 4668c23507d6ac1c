// The demo app in headless Chromium, served from another origin than
// control: two users sign up, share a document by email, type into it and
// converge; see each other's cursors; chat with a streamed reply; one
// attaches a file in the conversation and the other downloads it (progress
// bars on both sides, the bytes checked on disk); one goes
// offline, edits, comes back and converges; the owner revokes the other,
// whose page says so at once and stops asking for tokens or reconnecting.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
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

  it('a file attached in the conversation by one user is downloaded by the other, with progress shown', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-files-'))
    try {
      const bytes = randomBytes(3 * 1024 * 1024 + 777)
      const source = join(dir, 'numbers.bin')
      writeFileSync(source, bytes)
      const downloads = join(dir, 'downloads')
      await bob.cdp.send('Page.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads })
      // Slow links (1.5 MB/s each way) so that the bars have something to show.
      const slow = (u, on) => u.cdp.send('Network.emulateNetworkConditions', on
        ? { offline: false, latency: 0, downloadThroughput: 1.5 * 1024 * 1024, uploadThroughput: 1.5 * 1024 * 1024 }
        : { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 })
      // Every value the page's bars take, sampled each frame.
      const sample = (page, testid) => page.evaluate((id) => {
        window.__seen = []
        const tick = () => {
          for (const bar of document.querySelectorAll(`[data-testid="${id}-bar"]`)) window.__seen.push([bar.value, bar.max])
          window.__sampling = requestAnimationFrame(tick)
        }
        tick()
      }, testid)
      const seen = async (page) => await page.evaluate(() => { cancelAnimationFrame(window.__sampling); return window.__seen })

      await alice.page.waitForSelector('[data-testid=attach]')
      await slow(alice, true)
      await sample(alice.page, 'upload-progress')
      const input = await alice.page.$('[data-testid=attach-input]')
      await input.uploadFile(source)
      for (const u of [alice, bob]) {
        await u.page.waitForFunction(() => [...document.querySelectorAll('[data-testid=attachment-link]')].some((a) => a.textContent === 'numbers.bin'), { timeout: 20000 })
      }
      await slow(alice, false)
      const up = await seen(alice.page)
      assert.ok(up.some(([v, max]) => v > 0 && v < max), `the upload bar showed progress: ${JSON.stringify(up.slice(0, 5))}…`)
      assert.ok(up.some(([v, max]) => v === max && max === bytes.length), 'the upload bar reached the file size')
      await screenshot(alice.page, 'attachment-alice')

      await slow(bob, true)
      await sample(bob.page, 'download')
      const link = await bob.page.evaluateHandle(() => [...document.querySelectorAll('[data-testid=attachment-link]')].find((a) => a.textContent === 'numbers.bin'))
      await link.click()
      await bob.page.waitForSelector('[data-testid=download-verified]', { timeout: 20000 })
      await slow(bob, false)
      const down = await seen(bob.page)
      assert.ok(down.some(([v, max]) => v > 0 && v < max), `the download bar showed progress: ${JSON.stringify(down.slice(0, 5))}…`)
      await screenshot(bob.page, 'attachment-bob')
      const sha = createHash('sha256').update(bytes).digest('hex')
      assert.equal(await bob.page.$eval('[data-testid=download-verified]', (e) => e.title), sha)
      // The saved file, byte for byte.
      const deadline = Date.now() + 10000
      let saved = null
      while (saved === null) {
        const names = (() => { try { return readdirSync(downloads) } catch { return [] } })()
        if (names.includes('numbers.bin')) saved = readFileSync(join(downloads, 'numbers.bin'))
        else if (Date.now() > deadline) assert.fail(`no numbers.bin in ${downloads}: ${names}`)
        else await new Promise((resolve) => setTimeout(resolve, 50))
      }
      assert.ok(saved.equals(bytes), 'Bob saved the same bytes')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
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
