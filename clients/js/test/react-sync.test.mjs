// @tandem/react/sync with react-test-renderer, fake-indexeddb and the real
// server: useSync owns an engine, useLiveQuery shows pulled and local rows,
// useSyncStatus follows the engine, unmounting closes it.
// Dexie's liveQuery runs only where a global indexedDB exists (as in browsers): install
// fake-indexeddb's before Dexie loads. Each engine still gets a factory of its own.
import 'fake-indexeddb/auto'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createElement, act } from 'react'
import TestRenderer from 'react-test-renderer'
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb'
import { TandemProvider } from '@tandem/react'
import { useSync, useLiveQuery } from '@tandem/react/sync'
import { createSync } from '@tandem/client/sync'
import { startTandem, signup, clientFor, sleep } from './harness.mjs'

globalThis.IS_REACT_ACT_ENVIRONMENT = true
const warn = console.error
before(() => {
  const quiet = ['react-test-renderer is deprecated', 'was not wrapped in act(']
  console.error = (...args) => { if (!quiet.some((q) => String(args[0]).includes(q))) warn(...args) }
})

let tandem
before(async () => { tandem = await startTandem() })
after(async () => { console.error = warn; await tandem?.stop() })

async function until (pred, ms = 10000, what = 'condition') {
  const start = Date.now()
  while (!(await pred())) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`)
    await act(async () => { await sleep(20) })
  }
}

const TABLES = { todos: 'id' }

test('useSync + useLiveQuery: pulled rows render, local writes sync out, unmount closes the engine', async (t) => {
  const user = await signup(tandem, 'Hooks')
  const client = clientFor(tandem, user)
  const session = await client.api.get('/auth/session')
  const ws = session.workspaces.find((w) => w.type === 'personal').id
  const other = createSync(client, { workspaceId: ws, tables: TABLES, dexie: { indexedDB: new IDBFactory(), IDBKeyRange }, backoff: { initialMs: 20, maxMs: 200 } })
  // A failed assertion must not leave engines reconnecting (the file would then hang until
  // the runner's timeout instead of reporting the failure).
  t.after(() => { other.close(); if (renderer !== undefined) act(() => { renderer.unmount() }) })

  const views = []
  function Todos ({ id }) {
    const { sync, status } = useSync(id, { tables: TABLES, dexie: { indexedDB: factory, IDBKeyRange }, backoff: { initialMs: 20, maxMs: 200 } })
    const todos = useLiveQuery(async () => sync === null ? [] : await sync.db.table('todos').orderBy('id').toArray(), [sync], [])
    views.push({ sync, status, todos })
    return null
  }
  const factory = new IDBFactory()
  const last = () => views.at(-1)
  let renderer
  await act(async () => { renderer = TestRenderer.create(createElement(TandemProvider, { client }, createElement(Todos, { id: ws }))) })
  assert.equal(views[0].sync, null)
  assert.equal(views[0].status.state, 'starting')
  await until(() => last().status.state === 'idle' && last().status.live, 10000, 'the hook\'s engine idle and live')

  await other.db.table('todos').put({ id: 'a', title: 'from the other device' })
  await until(() => last().todos.length === 1, 10000, 'the pulled row rendered')
  assert.deepEqual(last().todos, [{ id: 'a', title: 'from the other device' }])

  const engine = last().sync
  await act(async () => { await engine.db.table('todos').put({ id: 'b', title: 'from the component' }) })
  // Dexie's liveQuery re-runs the query after the write's transaction commits, on a later
  // tick: the row must render from the local table, without waiting for the server.
  await until(() => last().todos.length === 2, 2000, 'the local write rendered')
  assert.deepEqual(last().todos.map((row) => row.id), ['a', 'b'])
  await until(async () => (await other.db.table('todos').get('b')) !== undefined, 10000, 'the local write on the other device')
  await until(() => last().status.pending === 0, 10000, 'the outbox drained')

  await act(async () => { renderer.unmount() })
  renderer = undefined
  assert.equal(engine.status.state, 'closed')
})
