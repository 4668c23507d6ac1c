// Not a test: the sync engine's initial sync and write-to-other-device
// latency in headless Chromium (real IndexedDB) against `tandem dev`.
// The workspace is filled from Node straight through the push endpoint.
// Usage: node bench-sync.mjs [rows=100000] [samples=100]   (TANDEM_BIN as for the tests)
import { api, launchChromium, openUser, startStatic, startTandem } from './harness.mjs'

const [rows = 100_000, samples = 100] = process.argv.slice(2).map(Number)
const tandem = await startTandem()
const site = await startStatic()
const chromium = await launchChromium()
try {
  const control = api(tandem.controlUrl)
  const user = await control.signup(`bench-${Date.now()}@bench.example.com`, 'Bench')
  const session = await control.call('GET', '/auth/session', user.token)
  const workspaceId = session.workspaces.find((w) => w.type === 'personal').id
  let t = performance.now()
  const hlc = () => `${String(Date.now()).padStart(13, '0')}:000000:filler`
  for (let i = 0; i < rows; i += 500) {
    const mutations = Array.from({ length: Math.min(500, rows - i) }, (_, j) => ({
      id: i + j + 1, collection: 'todos', rowId: `r${String(i + j).padStart(6, '0')}`, op: 'put', fields: { title: `row ${i + j}`, done: false }, hlc: hlc()
    }))
    await control.call('POST', `/workspaces/${workspaceId}/sync/push`, user.token, { clientGroupId: 'filler', clientId: 'filler', mutations })
  }
  console.log(`filled ${rows} rows through push in ${(performance.now() - t).toFixed(0)} ms`)

  const start = async (name) => {
    const d = await openUser(chromium.browser, name)
    await d.page.goto(`${site.origin}/sync/${process.env.RELAXED ? "#relaxed" : ""}`)
    await d.page.waitForFunction(() => typeof window.startDevice === 'function')
    return d
  }
  const a = await start('a')
  t = performance.now()
  await a.page.evaluate((args) => window.startDevice(args), { controlUrl: tandem.controlUrl, token: user.token, workspaceId })
  await a.page.waitForFunction(async (n) => (await window.device.sync.db.table('todos').count()) === n && window.device.status().state === 'idle', { timeout: 300000, polling: 100 }, rows)
  const initialMs = performance.now() - t
  const pulls = await a.page.evaluate(async () => (await window.device.sync.db.table('sync_runs').toArray()).filter((r) => r.kind === 'pull'))
  const requestMs = pulls.reduce((sum, r) => sum + r.durationMs, 0)
  console.log(`initial sync in Chromium: ${rows} rows in ${initialMs.toFixed(0)} ms (${pulls.length} pull requests: ${requestMs} ms waiting for the server, the rest applying)`)

  const b = await start('b')
  await b.page.evaluate((args) => window.startDevice(args), { controlUrl: tandem.controlUrl, token: user.token, workspaceId })
  await b.page.waitForFunction(async (n) => (await window.device.sync.db.table('todos').count()) === n && window.device.status().live, { timeout: 300000, polling: 100 }, rows)
  await a.page.waitForFunction(() => window.device.status().live, { timeout: 10000 })
  // Measured inside the pages (one browser, one clock): from just before the put on A to B's
  // `change` event for that row (the row is committed in B's table by then).
  await b.page.evaluate(() => {
    window.seen = {}
    window.device.sync.on('change', (e) => { for (const id of e.tables.todos ?? []) window.seen[id] ??= Date.now() })
  })
  const lat = []
  for (let i = 0; i < samples; i++) {
    const id = `lat${i}`
    const started = await a.page.evaluate(async (id) => { const t = Date.now(); await window.device.sync.db.table('todos').put({ id, title: id, done: false }); return t }, id)
    await b.page.waitForFunction((id) => window.seen[id] !== undefined, { polling: 5, timeout: 10000 }, id)
    lat.push(await b.page.evaluate((id) => window.seen[id], id) - started)
  }
  lat.sort((x, y) => x - y)
  const pct = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(1)
  console.log(`write-to-other-device latency in Chromium over ${samples} writes: p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms`)
} finally {
  await chromium.close()
  await site.stop()
  await tandem.stop()
}
