// The sync engine over Chromium's real IndexedDB: two devices (two browser
// contexts, each with its own storage) of one user edit the same rows while
// offline (Chromium's network emulation), reconnect, and end with identical
// tables and empty outboxes.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { api, launchChromium, openUser, screenshot, startStatic, startTandem } from './harness.mjs'

/** Polls an async condition (the harness's waitFor takes a synchronous one). */
async function waitFor (pred, ms, what) {
  const start = Date.now()
  while (!(await pred())) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

describe('@tandem/client/sync in Chromium', () => {
  let tandem, site, chromium, control, user, workspaceId
  const devices = []

  before(async () => {
    tandem = await startTandem()
    site = await startStatic()
    chromium = await launchChromium()
    control = api(tandem.controlUrl)
    user = await control.signup(`sync-${Date.now()}@sync.example.com`, 'Sync')
    const session = await control.call('GET', '/auth/session', user.token)
    workspaceId = session.workspaces.find((w) => w.type === 'personal').id
    for (const name of ['device-a', 'device-b']) {
      const d = await openUser(chromium.browser, name)
      if (process.env.SYNC_DEBUG) d.page.on('console', (m) => console.log(name, m.text()))
      await d.page.goto(`${site.origin}/sync/${process.env.SYNC_DEBUG ? '#debug' : ''}`)
      await d.page.waitForFunction(() => typeof window.startDevice === 'function')
      await d.page.evaluate((args) => window.startDevice(args), { controlUrl: tandem.controlUrl, token: user.token, workspaceId })
      devices.push(d)
    }
  })

  after(async () => {
    await chromium?.close()
    await site?.stop()
    await tandem?.stop()
  })

  const call = (d, fn, ...args) => d.page.evaluate(fn, ...args)
  const settled = async (d) => {
    const s = await call(d, () => window.device.status())
    return s.state === 'idle' && s.pending === 0
  }

  it('two devices edit the same rows offline, reconnect, and end with identical tables', async () => {
    const [a, b] = devices
    await call(a, () => Promise.all([
      window.device.put({ id: 't1', title: 'one', done: false }),
      window.device.put({ id: 't2', title: 'two', done: false })
    ]))
    await waitFor(async () => (await call(b, () => window.device.rows())).length === 2, 10000, 'B to receive the rows')
    await waitFor(async () => (await settled(a)) && (await settled(b)), 10000, 'both idle')

    await a.page.setOfflineMode(true)
    await b.page.setOfflineMode(true)
    await call(a, async () => {
      await window.device.update('t1', { title: 'A' })
      await window.device.put({ id: 't3', title: 'three', done: false })
    })
    await new Promise((resolve) => setTimeout(resolve, 5))
    await call(b, async () => {
      await window.device.update('t1', { title: 'B' })
      await window.device.update('t1', { done: true })
      await window.device.remove('t2')
    })
    // The engines tried and failed: they are offline with their outboxes full.
    await call(a, () => window.device.syncNow().catch(() => {}))
    await call(b, () => window.device.syncNow().catch(() => {}))
    // A sync the writes scheduled may still be failing: the state settles on offline.
    await waitFor(async () => (await call(a, () => window.device.status())).state === 'offline', 10000, 'A to report offline')
    assert.equal(await call(a, () => window.device.pending()), 2)
    assert.equal(await call(b, () => window.device.pending()), 3)
    assert.equal((await call(b, () => window.device.rows())).find((r) => r.id === 't1').title, 'B')

    await a.page.setOfflineMode(false)
    await b.page.setOfflineMode(false)
    await waitFor(async () => {
      if (!(await settled(a)) || !(await settled(b))) return false
      await call(a, () => window.device.syncNow().catch(() => {}))
      await call(b, () => window.device.syncNow().catch(() => {}))
      return JSON.stringify(await call(a, () => window.device.rows())) === JSON.stringify(await call(b, () => window.device.rows()))
    }, 20000, 'the devices to converge')

    const rows = await call(a, () => window.device.rows())
    assert.deepEqual(rows, await call(b, () => window.device.rows()))
    assert.deepEqual(rows, [
      { id: 't1', title: 'B', done: true },
      { id: 't3', title: 'three', done: false }
    ])
    assert.equal(await call(a, () => window.device.pending()), 0, 'no echo in A\'s outbox')
    assert.equal(await call(b, () => window.device.pending()), 0, 'no echo in B\'s outbox')
    assert.ok((await call(a, () => window.device.databases())).includes(`tandem-${workspaceId}`))
    for (const d of devices) assert.deepEqual(d.watch.pageErrors.map(String), [])
    await screenshot(a.page, 'sync-converged')
  })
})
