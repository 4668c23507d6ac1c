// @tandem/client/sync against the real server: Dexie over fake-indexeddb,
// each "device" with an IndexedDB of its own (a fresh IDBFactory), a fetch
// that can be cut to play offline, and tandem dev's sync endpoints.
import { test, before, after, describe } from 'node:test'
import assert from 'node:assert/strict'
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb'
import { createSync, HybridClock, coalesce, decide, parseHlc } from '@tandem/client/sync'
import { startTandem, signup, signupVerified, clientFor, waitFor, sleep } from './harness.mjs'

const TABLES = { todos: 'id, done', notes: 'id' }

/** A fetch that fails like a dropped network while `net.offline` is true. */
function netFetch (net) {
  return async (input, init) => {
    if (net.offline || (net.blockPush && String(input).includes('/sync/push'))) throw new TypeError('fetch failed (offline)')
    return await fetch(input, init)
  }
}

/** A device: its own IndexedDB, its own network switch, a sync engine for `workspaceId`. */
function device (tandem, user, workspaceId, { factory = new IDBFactory(), net = { offline: false }, rewrite = (url) => url, ...options } = {}) {
  const client = clientFor(tandem, user, { fetch: (input, init) => netFetch(net)(rewrite(String(input)), init) })
  const sync = createSync(client, {
    workspaceId,
    tables: TABLES,
    dexie: { indexedDB: factory, IDBKeyRange },
    backoff: { initialMs: 20, maxMs: 200 },
    pollIntervalMs: 2000,
    ...options
  })
  const runs = []
  sync.on('run', (r) => runs.push(r))
  return { sync, db: sync.db, net, factory, runs }
}

const rows = async (dev, table = 'todos') => (await dev.db.table(table).toArray()).sort((a, b) => a.id.localeCompare(b.id))
const pending = (dev) => dev.db.table('pending_ops').count()
const settled = (dev) => dev.sync.status.state === 'idle' && dev.sync.status.pending === 0

async function personalWorkspace (tandem, user) {
  return await workspaceOf(tandem, user, 'personal')
}

async function workspaceOf (tandem, user, type) {
  const session = await clientFor(tandem, user).api.get('/auth/session')
  return session.workspaces.find((w) => w.type === type).id
}

let domains = 0
/** An owner at a domain of their own: their org's team workspace can take other members. */
async function teamOwner (tandem) {
  const owner = await signupVerified(tandem, `owner@team-${process.pid}-${++domains}.dev`, 'Owner')
  return { owner, ws: await workspaceOf(tandem, owner, 'team') }
}

/** Waits until every device is idle with an empty outbox and they all hold the same rows. */
async function converge (devices, ms = 15000) {
  await waitFor(async () => {
    if (!devices.every(settled)) return false
    for (const d of devices) await d.sync.syncNow().catch(() => {})
    const [first, ...rest] = await Promise.all(devices.map(async (d) => JSON.stringify([await rows(d), await rows(d, 'notes')])))
    return rest.every((r) => r === first)
  }, ms, 'devices to converge')
}

describe('hybrid clock and coalescing', () => {
  test('clocks are in the contract format, increase, and move past received ones', () => {
    let wall = 1_764_000_000_000
    const clock = new HybridClock('abc', () => wall)
    const a = clock.now()
    assert.match(a, /^\d{13}:\d{6}:abc$/)
    const b = clock.now()
    assert.ok(b > a)
    assert.equal(parseHlc(b).counter, 1)
    clock.receive(`${wall + 5000}:000007:zzz`)
    const c = clock.now()
    assert.deepEqual([parseHlc(c).ms, parseHlc(c).counter], [wall + 5000, 8])
    wall += 10_000
    assert.equal(parseHlc(clock.now()).counter, 0)
    assert.throws(() => new HybridClock('a:b'))
  })

  test('entries of one client for one row coalesce; other clients and rows stay apart', () => {
    const op = (seq, clientId, rowId, o, fields) => ({ seq, clientId, table: 't', rowId, op: o, fields, hlc: `0000000000000:${String(seq).padStart(6, '0')}:${clientId}`, at: 0 })
    const out = coalesce([
      op(1, 'c1', 'r1', 'put', { a: 1, b: 1 }),
      op(2, 'c1', 'r2', 'patch', { a: 2 }),
      op(3, 'c1', 'r1', 'patch', { b: 3 }),
      op(4, 'c2', 'r1', 'patch', { c: 4 }),
      op(5, 'c1', 'r2', 'delete'),
      op(6, 'c1', 'r2', 'patch', { z: 1 }),
      op(7, 'c1', 'r1', 'patch', { a: 7 })
    ])
    const c1 = out.get('c1').map((m) => [m.mutation.id, m.mutation.rowId, m.mutation.op, m.mutation.fields, m.seqs])
    assert.deepEqual(c1, [
      [5, 'r2', 'delete', undefined, [2, 5]],
      [6, 'r2', 'patch', { z: 1 }, [6]],
      [7, 'r1', 'put', { a: 7, b: 3 }, [1, 3, 7]]
    ])
    assert.equal(out.get('c1')[2].mutation.hlc.endsWith(':000007:c1'), true)
    assert.deepEqual(out.get('c2').map((m) => m.mutation.id), [4])
  })

  test('a later pending change keeps its fields against an older server change', () => {
    const change = { collection: 't', rowId: 'r', fields: { a: 'server', b: 'server' }, deleted: false, hlc: '0000000000002:000000:s' }
    const local = { id: 'r', a: 'local', b: 'old' }
    const later = { clientId: 'c', table: 't', rowId: 'r', op: 'patch', fields: { a: 'local' }, hlc: '0000000000003:000000:c', at: 0 }
    const earlier = { ...later, hlc: '0000000000001:000000:c' }
    assert.deepEqual(decide(change, local, [later], 'id'), { id: 'r', a: 'local', b: 'server' })
    assert.deepEqual(decide(change, local, [earlier], 'id'), { id: 'r', a: 'server', b: 'server' })
    assert.equal(decide({ ...change, fields: null, deleted: true }, local, [{ ...later, op: 'put' }], 'id'), 'keep')
    assert.equal(decide({ ...change, fields: null, deleted: true }, local, [earlier], 'id'), null)
  })
})

describe('sync engine against tandem dev', () => {
  let tandem
  const open = []
  const dev = (...args) => { const d = device(...args); open.push(d); return d }
  before(async () => { tandem = await startTandem() })
  after(async () => {
    for (const d of open) d.sync.close()
    await tandem?.stop()
  })

  test('two devices edit the same rows offline, reconnect, and end with identical tables and empty outboxes', async () => {
    const user = await signup(tandem, 'Two')
    const ws = await personalWorkspace(tandem, user)
    const a = dev(tandem, user, ws)
    const b = dev(tandem, user, ws)

    await a.db.todos.bulkPut([{ id: 't1', title: 'one', done: false }, { id: 't2', title: 'two', done: false }, { id: 't3', title: 'three', done: false }])
    await waitFor(async () => (await rows(b)).length === 3, 10000, 'B to receive the first rows')
    assert.deepEqual(await rows(b), await rows(a))
    await waitFor(() => settled(a) && settled(b), 10000, 'both idle')

    a.net.offline = true
    b.net.offline = true
    // A: retitles t1, deletes t2, adds t4, writes a note. B (later): retitles t1 too, ticks it,
    // edits t2 (which A deletes), deletes t3.
    await a.db.todos.update('t1', { title: 'A' })
    await a.db.todos.delete('t2')
    await a.db.todos.put({ id: 't4', title: 'four', done: false })
    await a.db.notes.put({ id: 'n1', text: 'from A' })
    await sleep(5)
    await b.db.todos.update('t1', { title: 'B' })
    await b.db.todos.update('t1', { done: true })
    await b.db.todos.update('t2', { done: true })
    await b.db.todos.delete('t3')
    await waitFor(() => a.sync.status.state === 'offline' && b.sync.status.state === 'offline', 5000, 'both offline')
    assert.equal(await pending(a), 4)
    assert.equal(await pending(b), 4)

    a.net.offline = false
    b.net.offline = false
    await converge([a, b])

    const final = await rows(a)
    assert.deepEqual(final, await rows(b))
    assert.deepEqual(await rows(a, 'notes'), [{ id: 'n1', text: 'from A' }])
    const t1 = final.find((r) => r.id === 't1')
    assert.deepEqual(t1, { id: 't1', title: 'B', done: true }, 'field by field: B\'s later title and its tick')
    assert.ok(!final.some((r) => r.id === 't3'), 't3 deleted by B')
    assert.ok(final.some((r) => r.id === 't4'), 't4 added by A')
    // t2: A deleted it, then B patched it later; whatever the server made of it, both agree (checked above).

    // No echo: applying the server's changes captured nothing, and quiet rounds push nothing.
    assert.equal(await pending(a), 0)
    assert.equal(await pending(b), 0)
    const pushes = a.runs.filter((r) => r.kind === 'push').length + b.runs.filter((r) => r.kind === 'push').length
    await a.sync.syncNow()
    await b.sync.syncNow()
    await sleep(200)
    assert.equal(a.runs.filter((r) => r.kind === 'push').length + b.runs.filter((r) => r.kind === 'push').length, pushes)
    assert.equal(await pending(a), 0)
    assert.equal(await pending(b), 0)

    // Telemetry is persisted.
    const runs = await a.db.table('sync_runs').toArray()
    assert.ok(runs.some((r) => r.kind === 'push' && r.ok) && runs.some((r) => r.kind === 'pull' && r.ok))
    assert.ok(runs.some((r) => !r.ok), 'the offline attempts are recorded as failures')
  })

  test('a live change reaches the other device through a poke', async () => {
    const user = await signup(tandem, 'Poke')
    const ws = await personalWorkspace(tandem, user)
    const a = dev(tandem, user, ws, { pollIntervalMs: 600000 })
    const b = dev(tandem, user, ws, { pollIntervalMs: 600000 })
    await waitFor(() => a.sync.status.live && b.sync.status.live && settled(a) && settled(b), 10000, 'both streams open')
    const changes = []
    b.sync.on('change', (e) => changes.push(e))
    const started = performance.now()
    await a.db.todos.put({ id: 'p1', title: 'poked', done: false })
    await waitFor(async () => changes.length > 0 && (await b.db.todos.get('p1')) !== undefined, 5000, 'the row on B')
    const took = performance.now() - started
    assert.ok(took < 2000, `arrived after ${took} ms (no polling in this test)`)
    assert.deepEqual(changes.at(-1).tables.todos, ['p1'])
  })

  test('a killed instance\'s outbox is sent by the next instance on the same database', async () => {
    const user = await signup(tandem, 'Tabs')
    const ws = await personalWorkspace(tandem, user)
    const factory = new IDBFactory()
    const first = dev(tandem, user, ws, { factory, net: { offline: true } })
    await first.sync.start()
    await first.db.todos.bulkPut([{ id: 'k1', title: 'a', done: false }, { id: 'k2', title: 'b', done: false }])
    await first.db.todos.update('k1', { done: true })
    const orphaned = await first.db.table('pending_ops').toArray()
    assert.equal(orphaned.length, 3)
    assert.ok(orphaned.every((op) => op.clientId === first.sync.clientId))
    first.sync.close() // the tab is gone with its outbox unsent

    const other = dev(tandem, user, ws)
    const next = dev(tandem, user, ws, { factory })
    assert.notEqual(next.sync.clientId, first.sync.clientId)
    await next.db.todos.put({ id: 'k3', title: 'c', done: false })
    await converge([next, other])
    assert.deepEqual((await rows(other)).map((r) => [r.id, r.done]), [['k1', true], ['k2', false], ['k3', false]])
    const state = await next.db.table('sync_state').get('state')
    const maxOrphan = Math.max(...orphaned.map((o) => o.seq))
    assert.equal(state.lastMutationIds[first.sync.clientId], maxOrphan, 'the first client\'s mutations were acknowledged under its own id')
    assert.ok(state.lastMutationIds[next.sync.clientId] > maxOrphan, 'mutation ids keep increasing across instances')
  })

  test('two live instances on one database share the outbox without losing or doubling changes', async () => {
    const user = await signup(tandem, 'LiveTabs')
    const ws = await personalWorkspace(tandem, user)
    const factory = new IDBFactory()
    const t1 = dev(tandem, user, ws, { factory })
    const t2 = dev(tandem, user, ws, { factory })
    const other = dev(tandem, user, ws)
    await Promise.all([t1.sync.start(), t2.sync.start()])
    for (let i = 0; i < 20; i++) {
      await (i % 2 === 0 ? t1 : t2).db.todos.put({ id: `m${String(i).padStart(2, '0')}`, title: `v${i}`, done: false })
    }
    await converge([t1, t2, other])
    assert.equal((await rows(other)).length, 20)
  })

  test('backpressure: the status and event follow the outbox size', async () => {
    const user = await signup(tandem, 'Pressure')
    const ws = await personalWorkspace(tandem, user)
    const d = dev(tandem, user, ws, { maxPendingOps: 5, net: { offline: true } })
    const events = []
    d.sync.on('backpressure', (on) => events.push(on))
    await d.sync.start()
    for (let i = 0; i < 6; i++) await d.db.notes.put({ id: `n${i}`, text: 'x' })
    await waitFor(() => d.sync.status.backpressure, 5000, 'backpressure on')
    assert.deepEqual(events, [true])
    let released = false
    const waiting = d.sync.waitForCapacity().then(() => { released = true })
    await sleep(50)
    assert.equal(released, false)
    d.net.offline = false
    await waiting
    await waitFor(() => settled(d), 10000, 'drained')
    assert.deepEqual(events, [true, false])
  })

  test('a viewer\'s changes are rejected and the local rows return to the server\'s state', async () => {
    const { owner, ws } = await teamOwner(tandem)
    const viewer = await signup(tandem, 'Viewer')
    await clientFor(tandem, owner).api.post('/workspaces/{id}/members', { path: { id: ws }, body: { userId: viewer.id, role: 'viewer' } })
    const o = dev(tandem, owner, ws)
    await o.db.todos.put({ id: 'v1', title: 'owner\'s', done: false })
    const v = dev(tandem, viewer, ws)
    await waitFor(async () => (await v.db.todos.get('v1')) !== undefined, 10000, 'the viewer to read the row')
    const rejected = []
    v.sync.on('rejected', (list) => rejected.push(...list))
    await v.db.todos.update('v1', { title: 'viewer\'s' })
    await waitFor(() => rejected.length === 1, 10000, 'the rejection')
    assert.equal(rejected[0].mutation.rowId, 'v1')
    await waitFor(async () => (await v.db.todos.get('v1'))?.title === 'owner\'s' && settled(v), 10000, 'the server\'s row back')
    assert.equal(await pending(v), 0)
  })

  test('a removed member gets revoked and the local database is deleted', async () => {
    const { owner, ws } = await teamOwner(tandem)
    const guest = await signup(tandem, 'Guest')
    const api = clientFor(tandem, owner).api
    await api.post('/workspaces/{id}/members', { path: { id: ws }, body: { userId: guest.id, role: 'editor' } })
    const g = dev(tandem, guest, ws)
    await g.db.todos.put({ id: 'g1', title: 'guest', done: false })
    await waitFor(() => settled(g) && g.sync.status.live, 10000, 'the guest synced')
    assert.ok((await g.factory.databases()).some((d) => d.name === `tandem-${ws}`))
    const revoked = new Promise((resolve) => g.sync.on('revoked', resolve))
    await api.delete('/workspaces/{id}/members/{userId}', { path: { id: ws, userId: guest.id } })
    assert.ok(['access_revoked', 'not_found'].includes(await revoked))
    assert.equal(g.sync.status.state, 'revoked')
    await waitFor(async () => !(await g.factory.databases()).some((d) => d.name === `tandem-${ws}`), 5000, 'the database deleted')
  })

  test('without the event stream, a 404 on pull from a removed member also deletes the database', async () => {
    const { owner, ws } = await teamOwner(tandem)
    const guest = await signup(tandem, 'Guest')
    const api = clientFor(tandem, owner).api
    await api.post('/workspaces/{id}/members', { path: { id: ws }, body: { userId: guest.id, role: 'editor' } })
    const g = dev(tandem, guest, ws, { events: false })
    await g.db.todos.put({ id: 'g1', title: 'guest', done: false })
    await waitFor(() => settled(g), 10000, 'the guest synced')
    await api.delete('/workspaces/{id}/members/{userId}', { path: { id: ws, userId: guest.id } })
    const revoked = new Promise((resolve) => g.sync.on('revoked', resolve))
    await g.sync.syncNow().catch(() => {})
    assert.equal(await revoked, 'not_found')
    await waitFor(async () => !(await g.factory.databases()).some((d) => d.name === `tandem-${ws}`), 5000, 'the database deleted')
  })

  test('deleteLocalData() stops the engine and deletes the database with its outbox', async () => {
    const user = await signup(tandem, 'SignOut')
    const ws = await personalWorkspace(tandem, user)
    const d = dev(tandem, user, ws, { net: { offline: true } })
    await d.db.todos.put({ id: 'unsent', title: 'x', done: false })
    assert.ok((await d.factory.databases()).some((x) => x.name === `tandem-${ws}`))
    await d.sync.deleteLocalData()
    assert.equal(d.sync.status.state, 'closed')
    assert.ok(!(await d.factory.databases()).some((x) => x.name === `tandem-${ws}`))
  })

  test('a 404 from a missing endpoint (not a lost workspace) keeps the database and its outbox', async () => {
    const user = await signup(tandem, 'Proxy')
    const ws = await personalWorkspace(tandem, user)
    const d = dev(tandem, user, ws, { events: false, rewrite: (url) => url.replace('/sync/', '/sync-missing/') })
    await d.db.todos.put({ id: 'kept', title: 'unsent', done: false })
    await waitFor(() => d.sync.status.state === 'error', 10000, 'the error state')
    assert.equal(d.sync.status.error.status, 404)
    assert.notEqual(d.sync.status.state, 'revoked')
    assert.ok((await d.factory.databases()).some((x) => x.name === `tandem-${ws}`))
    assert.equal(await pending(d), 1)
  })

})

describe('reset after compaction', () => {
  let tandem
  const open = []
  // Tombstones are pruned as soon as the compactor runs (every 50 ms).
  before(async () => { tandem = await startTandem({ env: { TANDEM_SYNC_TOMBSTONE_HORIZON_MS: '0', TANDEM_SYNC_COMPACT_INTERVAL_MS: '50' } }) })
  after(async () => {
    for (const d of open) d.sync.close()
    await tandem?.stop()
  })

  test('a device behind a pruned deletion gets reset: the server\'s state, its own pending changes on top', async () => {
    const user = await signup(tandem, 'Reset')
    const ws = await personalWorkspace(tandem, user)
    const a = device(tandem, user, ws)
    const b = device(tandem, user, ws, { events: false, pollIntervalMs: 600000 })
    open.push(a, b)
    await a.db.todos.bulkPut([1, 2, 3].map((i) => ({ id: `r${i}`, title: `r${i}`, done: false })))
    await converge([a, b])

    // B goes offline and changes r1 and adds r4 locally.
    const resets = []
    b.sync.on('change', (e) => { if (e.reset) resets.push(e) })
    b.net.offline = true
    await b.db.todos.update('r1', { title: 'B local' })
    await b.db.todos.put({ id: 'r4', title: 'B new', done: false })
    // A deletes r2 (its tombstone is pruned at once) and retitles r3.
    await a.db.todos.delete('r2')
    await a.db.todos.update('r3', { title: 'A' })
    await waitFor(() => settled(a), 10000, 'A pushed')
    await sleep(300) // the compactor prunes r2's tombstone
    // Back online, but its pushes still fail: the pull comes first.
    b.net.blockPush = true
    b.net.offline = false

    await b.sync.syncNow().catch(() => {}) // the push fails, the pull resets
    await waitFor(() => resets.length > 0, 5000, 'B to be reset')
    assert.ok((await b.db.table('sync_runs').toArray()).some((r) => r.kind === 'pull' && r.reset === true))
    assert.deepEqual((await rows(b)).map((r) => [r.id, r.title]), [['r1', 'B local'], ['r3', 'A'], ['r4', 'B new']],
      'r2 gone, A\'s r3, B\'s pending r1 and r4 kept on top')
    assert.equal(await pending(b), 2)

    b.net.blockPush = false
    await converge([a, b])
    assert.deepEqual((await rows(a)).map((r) => [r.id, r.title]), [['r1', 'B local'], ['r3', 'A'], ['r4', 'B new']])
  })
})
