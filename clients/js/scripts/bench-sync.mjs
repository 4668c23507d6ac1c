// Client-side figures of @tandem/client/sync against a real `tandem dev`
// (SQLite), in Node over fake-indexeddb (an in-memory IndexedDB written in
// JavaScript: slower than a browser's, so these are floors):
//   - capture: local writes per second with the outbox entry in the same transaction;
//   - push drain: an offline outbox of N changes emptied after reconnecting;
//   - initial sync: a fresh device pulling N rows;
//   - latency: a write on one device until it is in the other device's table (pokes), p50/p99.
// Usage (after `npm run build` and `cargo build --bin tandem`):
//   [BATCH=push batch size] node scripts/bench-sync.mjs [changes=5000] [rows=10000] [samples=100]
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb'
import { createSync } from '@tandem/client/sync'
import { startTandem, signup, clientFor } from '../test/harness.mjs'

const [changes = 5000, rows = 10000, samples = 100] = process.argv.slice(2).map(Number)
const TABLES = { items: 'id' }
const tandem = await startTandem()
const engines = []
try {
  const user = await signup(tandem, 'Bench')
  const session = await clientFor(tandem, user).api.get('/auth/session')
  const ws = session.workspaces.find((w) => w.type === 'personal').id
  const net = { offline: false }
  const device = (options = {}) => {
    const client = clientFor(tandem, user, { fetch: async (i, init) => { if (net.offline && options.cut) throw new TypeError('offline'); return await fetch(i, init) } })
    const sync = createSync(client, { workspaceId: ws, tables: TABLES, dexie: { indexedDB: new IDBFactory(), IDBKeyRange }, backoff: { initialMs: 20, maxMs: 200 }, ...options.sync })
    engines.push(sync)
    return sync
  }
  const until = async (pred) => { while (!(await pred())) await new Promise((resolve) => setTimeout(resolve, 5)) }
  const rate = (n, ms) => `${Math.round(n / (ms / 1000))}/s`

  // Capture and push drain.
  net.offline = true
  const a = device({ cut: true, sync: { maxPendingOps: changes * 2, ...(process.env.BATCH ? { batchSize: Number(process.env.BATCH) } : {}) } })
  await a.start()
  let t = performance.now()
  for (let i = 0; i < changes; i += 100) {
    await a.db.table('items').bulkPut(Array.from({ length: Math.min(100, changes - i) }, (_, j) => ({ id: `i${i + j}`, n: i + j, text: 'x'.repeat(40) })))
  }
  const captureMs = performance.now() - t
  const captured = await a.db.table('pending_ops').count()
  t = performance.now()
  net.offline = false
  void a.syncNow().catch(() => {}) // wake it now rather than after the backoff
  await until(async () => a.status.pending === 0 && a.status.state === 'idle')
  const drainMs = performance.now() - t
  console.log(`capture: ${captured} changes in ${captureMs.toFixed(0)} ms (${rate(captured, captureMs)}, bulkPut of 100)`)
  console.log(`push drain: ${captured} changes in ${drainMs.toFixed(0)} ms (${rate(captured, drainMs)}, batches of ${process.env.BATCH ?? 100}, then a pull of them)`)

  // Initial sync of `rows` rows (the workspace holds `changes` already: top it up).
  for (let i = changes; i < rows; i += 100) {
    await a.db.table('items').bulkPut(Array.from({ length: Math.min(100, rows - i) }, (_, j) => ({ id: `i${i + j}`, n: i + j, text: 'x'.repeat(40) })))
  }
  await until(async () => a.status.pending === 0 && a.status.state === 'idle')
  t = performance.now()
  const b = device({ sync: { events: false } })
  await until(async () => b.status.state === 'idle' && (await b.db.table('items').count()) >= Math.max(rows, changes))
  const initialMs = performance.now() - t
  console.log(`initial sync: ${await b.db.table('items').count()} rows in ${initialMs.toFixed(0)} ms (${rate(Math.max(rows, changes), initialMs)}, pages of 1000)`)
  b.close()

  // Write-to-other-device latency through pokes.
  const c = device({ sync: { pollIntervalMs: 600000, pushDelayMs: 0 } })
  const d = device({ sync: { pollIntervalMs: 600000 } })
  await until(async () => c.status.live && d.status.live && c.status.state === 'idle' && d.status.state === 'idle')
  const lat = []
  for (let i = 0; i < samples; i++) {
    const id = `lat${i}`
    const start = performance.now()
    await c.db.table('items').put({ id, n: i })
    await until(async () => (await d.db.table('items').get(id)) !== undefined)
    lat.push(performance.now() - start)
  }
  lat.sort((x, y) => x - y)
  const pct = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(1)
  console.log(`write-to-other-device latency over ${samples} writes: p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms`)
} finally {
  for (const e of engines) e.close()
  await tandem.stop()
}
