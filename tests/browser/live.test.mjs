// Live lists in the demo, in headless Chromium: Bob's home screen lists the
// projects and documents of a workspace Alice shares with him through the
// workspace event stream (@tandem/react's useProjects / useDocuments). When
// Alice renames a document or creates a project, Bob's page changes without
// a reload; two models' answers show side by side with the selection.
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { api, launchChromium, openUser, screenshot, startStatic, startTandem, timed } from './harness.mjs'

async function signUp (page, url, name, email) {
  await page.goto(url)
  await page.click('[data-testid=auth-switch]')
  await page.type('input[name=displayName]', name)
  await page.type('input[name=email]', email)
  await page.type('input[name=password]', 'password123')
  await page.click('[data-testid=auth-submit]')
  await page.waitForSelector('[data-testid=who]')
}

const token = (page) => page.evaluate(() => localStorage.getItem('tandem.session'))
const homeText = (page) => page.$eval('main', (m) => m.textContent)

describe('live lists in the demo', () => {
  let tandem, site, chromium, alice, bob, control, aliceToken, bobId, ws, projectId, docId
  const stamp = Date.now()

  before(async () => {
    tandem = await startTandem()
    site = await startStatic()
    chromium = await launchChromium()
    alice = await openUser(chromium.browser, 'alice')
    bob = await openUser(chromium.browser, 'bob')
    control = api(tandem.controlUrl)
  })

  after(async () => {
    await chromium?.close()
    await site?.stop()
    await tandem?.stop()
  })

  it('a document Alice renames changes in Bob\'s sidebar without a reload', async () => {
    const start = `${site.origin}/?control=${encodeURIComponent(tandem.controlUrl)}&relay=${encodeURIComponent(tandem.relayUrl)}`
    await signUp(alice.page, start, 'Alice', `alice-${stamp}@alice.example.com`)
    await signUp(bob.page, start, 'Bob', `bob-${stamp}@bob.example.com`)
    aliceToken = await token(alice.page)
    const bobToken = await token(bob.page)
    const session = await control.call('GET', '/auth/session', aliceToken)
    ws = session.workspaces.find((w) => w.type === 'personal').id
    bobId = (await control.call('GET', '/auth/session', bobToken)).user.id
    projectId = (await control.call('POST', `/workspaces/${ws}/projects`, aliceToken, { name: 'Roadmap' })).id
    docId = (await control.call('POST', `/projects/${projectId}/documents`, aliceToken, { title: 'First draft' })).id
    await control.call('POST', `/workspaces/${ws}/members`, aliceToken, { userId: bobId, role: 'editor' })

    // Bob loads his home screen once (he was added after it loaded) … and the first load of
    // his workspaces fails: the page says so and tries again by itself.
    let refused = 0
    const failFirstLoad = (req) => {
      if (req.isInterceptResolutionHandled()) return
      if (refused === 0 && req.method() === 'GET' && new URL(req.url()).pathname === '/workspaces') {
        refused++
        void req.respond({ status: 503, contentType: 'application/json', headers: { 'access-control-allow-origin': '*' }, body: '{"error":{"code":"unavailable","message":"try again"}}' })
      } else {
        void req.continue()
      }
    }
    await bob.page.setRequestInterception(true)
    bob.page.on('request', failFirstLoad)
    await bob.page.reload()
    await bob.page.waitForSelector('[data-testid=workspaces-error]', { timeout: 20000 })
    // (A full page load against a debug build: generous, unlike the live update below.)
    // Polled on an interval, not on animation frames (which a page not in front may not get).
    await bob.page.waitForFunction(() => document.querySelector('main').textContent.includes('First draft'), { timeout: 20000, polling: 100 })
      .catch(async (err) => {
        await screenshot(bob.page, 'live-bob-home-timeout')
        throw new Error(`Bob's home never listed the document (${new Date().toISOString()}); it shows: ${await homeText(bob.page)}; ` +
          `refused or failed requests: ${JSON.stringify(bob.watch.httpErrors)}`, { cause: err })
      })
    assert.equal(refused, 1)
    assert.equal(await bob.page.$('[data-testid=workspaces-error]'), null, 'the error is gone once loaded')
    bob.page.off('request', failFirstLoad)
    await bob.page.setRequestInterception(false)
    await bob.page.evaluate(() => { window.__sameLoad = true })

    // … and from now on it follows Alice's changes by itself.
    const took = await timed(async () => {
      await control.call('PATCH', `/documents/${docId}`, aliceToken, { title: 'Final draft' })
      await bob.page.waitForFunction(() => document.querySelector('main').textContent.includes('Final draft'), { timeout: 5000 })
    })
    console.log(`# rename → Bob's sidebar: ${took.toFixed(0)} ms`)
    assert.ok(!(await homeText(bob.page)).includes('First draft'))
    assert.equal(await bob.page.evaluate(() => window.__sameLoad), true, 'no reload')

    // A project Alice creates in her own page shows up on Bob's.
    await alice.page.waitForFunction(() => [...document.querySelectorAll('[data-testid=workspace] h2')].some((h) => h.textContent.includes('personal')))
    const personal = await alice.page.evaluateHandle(() => [...document.querySelectorAll('[data-testid=workspace]')].find((w) => w.querySelector('h2').textContent.includes('personal')))
    await (await personal.$('[data-testid=project-name]')).type('Launch')
    await (await personal.$('[data-testid=project-create]')).click()
    await bob.page.waitForFunction(() => [...document.querySelectorAll('[data-testid=project] h3')].some((h) => h.textContent === 'Launch'), { timeout: 5000 })
    // Alice's own list too, without the reload it used to do.
    await alice.page.waitForFunction(() => [...document.querySelectorAll('[data-testid=project] h3')].some((h) => h.textContent === 'Launch'), { timeout: 5000 })
    // A deleted document leaves Bob's list.
    await control.call('DELETE', `/documents/${docId}`, aliceToken)
    await bob.page.waitForFunction(() => !document.querySelector('main').textContent.includes('Final draft'), { timeout: 5000 })
    assert.equal(await bob.page.evaluate(() => window.__sameLoad), true, 'still no reload')
    await screenshot(bob.page, 'live-lists-bob')
    assert.deepEqual(bob.watch.pageErrors, [])
  })

  it('two models\' answers side by side, the selection shared', async () => {
    const doc = (await control.call('POST', `/projects/${projectId}/documents`, aliceToken, { title: 'Answers' })).id
    await alice.page.goto(`${site.origin}/#/doc/${doc}`)
    await alice.page.waitForSelector('[data-testid=ask-two-models]')
    // The document's conversation (Alice's page made it): Bob takes part.
    const chats = await control.call('GET', `/conversations?projectId=${projectId}`, aliceToken)
    const chat = chats.items.find((c) => c.title === 'Answers')
    await control.call('POST', `/conversations/${chat.id}/participants`, aliceToken, { userId: bobId })
    await bob.page.goto(`${site.origin}/#/doc/${doc}`)
    await bob.page.waitForSelector('[data-testid=answer-sets]')
    await alice.page.click('[data-testid=ask-two-models]')
    for (const u of [alice, bob]) {
      await u.page.waitForFunction(() => document.querySelectorAll('[data-testid=answer]').length === 2 &&
        [...document.querySelectorAll('[data-testid=answer]')].every((a) => !a.querySelector('.cursor') && a.textContent.includes('answers')), { timeout: 10000 })
    }
    const selected = (page) => page.$$eval('[data-testid=answer]', (as) => as.map((a) => a.dataset.selected))
    assert.deepEqual(await selected(bob.page), ['true', 'false'])
    await bob.page.click('[data-testid=answer-select]')
    await alice.page.waitForFunction(() => [...document.querySelectorAll('[data-testid=answer]')].map((a) => a.dataset.selected).join() === 'false,true', { timeout: 5000 })
    assert.deepEqual(await selected(alice.page), ['false', 'true'])
    await screenshot(alice.page, 'answers-side-by-side')
  })
})
