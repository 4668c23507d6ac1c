// Attachments in the demo app, in headless Chromium: Alice attaches a file in
// a document's conversation (a progress bar while it uploads over a slowed
// link), Bob — who is NOT a member of Alice's workspace, only the document's
// grantee and a participant of its conversation — sees the attachment,
// downloads it through @tandem/client (a progress bar, the sha256 checked;
// control lets him read the file through the conversation) and the file his
// browser saves is the same bytes. The file goes in 1 MiB parts, each after
// the first with its SHA-256 state, so control proves it without reading it
// back (the header passes CORS: the page is on another origin).
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { api, launchChromium, openUser, screenshot, startStatic, startTandem, waitFor } from './harness.mjs'

/** Every value the page's `${testid}-bar` progress bars take, sampled each frame until `seen()`. */
async function sample (page, testid) {
  await page.evaluate((id) => {
    window.__seen = []
    const tick = () => {
      for (const bar of document.querySelectorAll(`[data-testid="${id}-bar"]`)) window.__seen.push([bar.value, bar.max])
      window.__sampling = requestAnimationFrame(tick)
    }
    tick()
  }, testid)
  return async () => await page.evaluate(() => { cancelAnimationFrame(window.__sampling); return window.__seen })
}

/** Slows the page's network to `bytesPerSec` each way (or back to full speed with null). */
async function throttle (user, bytesPerSec) {
  await user.cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: bytesPerSec ?? -1, uploadThroughput: bytesPerSec ?? -1
  })
}

const PART = 1024 * 1024

/** Control's `tandem_control_files_readback_bytes_total`. */
async function readBack (controlUrl) {
  const text = await (await fetch(`${controlUrl}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith('tandem_control_files_readback_bytes_total '))
  assert.ok(line !== undefined, 'the read-back metric')
  return Number(line.split(' ')[1])
}

describe('attachments in the demo app', () => {
  let tandem, site, chromium, alice, bob, dir
  const bytes = randomBytes(3 * 1024 * 1024 + 777)
  const sha = createHash('sha256').update(bytes).digest('hex')

  before(async () => {
    // Parts of 1 MiB: the 3 MB file goes in four, the later three with their SHA-256 states
    // (a header the cross-origin page may send only if control's CORS allows it).
    tandem = await startTandem(['--files-part-bytes', String(PART)])
    site = await startStatic()
    chromium = await launchChromium()
    alice = await openUser(chromium.browser, 'alice')
    bob = await openUser(chromium.browser, 'bob')
    dir = mkdtempSync(join(tmpdir(), 'tandem-files-'))
  })

  after(async () => {
    await chromium?.close()
    await site?.stop()
    await tandem?.stop()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  it('a file attached in the conversation by one user is downloaded by the other, with progress shown', async () => {
    const control = api(tandem.controlUrl)
    const stamp = Date.now()
    const a = await control.signup(`alice-${stamp}@alice.example.com`, 'Alice')
    const bobEmail = `bob-${stamp}@bob.example.com`
    const b = await control.signup(bobEmail, 'Bob')
    const session = await control.call('GET', '/auth/session', a.token)
    const ws = session.workspaces.find((w) => w.type === 'personal').id
    const project = await control.call('POST', `/workspaces/${ws}/projects`, a.token, { name: 'Launch' })
    const doc = await control.call('POST', `/projects/${project.id}/documents`, a.token, { title: 'Press kit' })
    // Bob gets the document (as the demo's share panel does), not the workspace.
    await control.call('POST', `/documents/${doc.id}/members`, a.token, { email: bobEmail, role: 'editor' })
    const outside = await fetch(`${tandem.controlUrl}/workspaces/${ws}/projects`, { headers: { authorization: `Bearer ${b.token}` } })
    assert.equal(outside.status, 404, 'Bob must not be a member of Alice\'s workspace')

    const open = async (user, token) => {
      await user.page.evaluateOnNewDocument((t) => localStorage.setItem('tandem.session', t), token)
      await user.page.goto(`${site.origin}/?control=${encodeURIComponent(tandem.controlUrl)}&relay=${encodeURIComponent(tandem.relayUrl)}#/doc/${doc.id}`)
    }
    // Alice opens the document first: the owner's page makes its conversation.
    await open(alice, a.token)
    await alice.page.waitForSelector('[data-testid=attach]', { timeout: 10000 })
    let conversation
    for (const start = Date.now(); conversation === undefined; await new Promise((resolve) => setTimeout(resolve, 50))) {
      conversation = (await control.call('GET', '/conversations', a.token)).items.find((c) => c.projectId === project.id)
      assert.ok(Date.now() - start < 10000, 'the document\'s conversation was not made')
    }
    await control.call('POST', `/conversations/${conversation.id}/participants`, a.token, { userId: b.id })
    await open(bob, b.token)
    await bob.page.waitForSelector('[data-testid=chat-input]', { timeout: 10000 })

    // Alice attaches the file over a 1.5 MB/s link: the bar moves, then the message appears for both.
    const source = join(dir, 'press-kit.bin')
    writeFileSync(source, bytes)
    await throttle(alice, 1.5 * 1024 * 1024)
    const uploadSeen = await sample(alice.page, 'upload-progress')
    await (await alice.page.$('[data-testid=attach-input]')).uploadFile(source)
    for (const u of [alice, bob]) {
      await u.page.waitForFunction(() => [...document.querySelectorAll('[data-testid=attachment-link]')].some((a) => a.textContent === 'press-kit.bin'), { timeout: 30000 })
    }
    await throttle(alice, null)
    // Its four parts went through control, each after the first with its state: proven, not read back.
    assert.equal(await readBack(tandem.controlUrl), 0, 'the upload was proven by its parts\' SHA-256 states')
    const up = await uploadSeen()
    assert.ok(up.some(([v, max]) => v > 0 && v < max), `the upload bar showed progress between 0 and the size: ${JSON.stringify(up.slice(0, 8))}`)
    assert.ok(up.some(([v, max]) => v === max && max === bytes.length), 'the upload bar reached the file size')
    await screenshot(alice.page, 'attachment-uploaded-alice')

    // Bob downloads it over a slowed link: the bar moves, the hash is checked, the browser saves it.
    const downloads = join(dir, 'downloads')
    await bob.cdp.send('Page.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads })
    await throttle(bob, 1.5 * 1024 * 1024)
    const downloadSeen = await sample(bob.page, 'download')
    const link = await bob.page.evaluateHandle(() => [...document.querySelectorAll('[data-testid=attachment-link]')].find((a) => a.textContent === 'press-kit.bin'))
    await link.click()
    await bob.page.waitForSelector('[data-testid=download-verified]', { timeout: 30000 }).catch(async (err) => {
      const bar = await bob.page.$eval('[data-testid=download]', (e) => e.textContent).catch(() => 'no bar')
      throw new Error(`${err.message}; Bob's download: ${bar}`)
    })
    await throttle(bob, null)
    const down = await downloadSeen()
    assert.ok(down.some(([v, max]) => v > 0 && v < max), `the download bar showed progress between 0 and the size: ${JSON.stringify(down.slice(0, 8))}`)
    assert.equal(await bob.page.$eval('[data-testid=download-verified]', (e) => e.title), sha)
    // The file was his to read only through the conversation: still no workspace for him.
    const again = await fetch(`${tandem.controlUrl}/workspaces/${ws}/projects`, { headers: { authorization: `Bearer ${b.token}` } })
    assert.equal(again.status, 404)
    await screenshot(bob.page, 'attachment-downloaded-bob')
    const saved = join(downloads, 'press-kit.bin')
    await waitFor(() => { try { return readdirSync(downloads).includes('press-kit.bin') } catch { return false } }, 10000, 'the saved file')
    assert.ok(readFileSync(saved).equals(bytes), 'Bob\'s browser saved the same bytes')
  })

  it('no page errors', () => {
    assert.deepEqual([...alice.watch.pageErrors, ...bob.watch.pageErrors].map(String), [])
  })
})
