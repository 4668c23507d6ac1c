// The demo as `tandem dev` serves it: the page at control's `/` (the build
// embedded in the binary), control as its origin and the relay from the URL
// control writes into the page; an app route (`/verify-email`) gets the page.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { launchChromium, openUser, startTandem } from './harness.mjs'

describe('the demo served by tandem dev', () => {
  let tandem, chromium, user

  before(async () => {
    tandem = await startTandem()
    chromium = await launchChromium()
    user = await openUser(chromium.browser, 'dana')
  })

  after(async () => {
    await chromium?.close()
    await tandem?.stop()
  })

  it('signs up, creates a document and connects to the relay named in the page', async () => {
    const { page } = user
    await page.goto(`${tandem.controlUrl}/`)
    const relay = await page.$eval('meta[name="tandem-relay-url"]', (m) => m.getAttribute('content'))
    assert.equal(relay, tandem.relayUrl)
    await page.click('[data-testid=auth-switch]')
    await page.type('input[name=displayName]', 'Dana')
    await page.type('input[name=email]', `dana-${Date.now()}@dana.example.com`)
    await page.type('input[name=password]', 'password123')
    await page.click('[data-testid=auth-submit]')
    const personal = await page.waitForFunction(() => [...document.querySelectorAll('[data-testid=workspace]')].find((w) => w.querySelector('h2').textContent.includes('personal')))
    await (await personal.$('[data-testid=project-name]')).type('Notes')
    await (await personal.$('[data-testid=project-create]')).click()
    await personal.waitForSelector('[data-testid=doc-name]')
    await (await personal.$('[data-testid=doc-name]')).type('Today')
    await (await personal.$('[data-testid=doc-create]')).click()
    await page.waitForSelector('[data-testid=status].connected', { timeout: 5000 })
    assert.equal(user.watch.sockets, 1)
    assert.deepEqual(user.watch.pageErrors.map(String), [])
  })

  it('answers an app route with the page', async () => {
    const res = await user.page.goto(`${tandem.controlUrl}/verify-email?token=not-a-token`)
    assert.equal(res.status(), 200)
    await user.page.waitForSelector('[data-testid=verify-email]')
  })
})
