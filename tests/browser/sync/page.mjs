// A page of @tandem/client and @tandem/client/sync (bundled from the built
// packages in clients/js) over the browser's real IndexedDB. The test calls
// window.startDevice(...) and then drives window.device.
import { createTandem } from '../../../clients/js/packages/client/dist/index.js'
import { createSync } from '../../../clients/js/packages/client/dist/sync/index.js'

window.startDevice = async ({ controlUrl, token, workspaceId }) => {
  const tandem = createTandem({ controlUrl, getSessionToken: () => token })
  const sync = createSync(tandem, {
    workspaceId,
    tables: { todos: 'id, done' },
    backoff: { initialMs: 50, maxMs: 300 },
    pollIntervalMs: 2000,
    ...(window.location.hash === '#relaxed' ? { dexie: { chromeTransactionDurability: 'relaxed' } } : {})
  })
  const todos = sync.db.table('todos')
  // Shows the rows (their count only past 100: the bench syncs 100 000).
  const show = async () => {
    const n = await todos.count()
    document.getElementById('rows').textContent = n > 100 ? `${n} rows` : JSON.stringify(await todos.orderBy('id').toArray(), null, 1)
  }
  sync.on('change', () => { void show() })
  if (window.location.hash === '#debug') {
    sync.on('run', (r) => console.log('run', sync.clientId.slice(0, 4), JSON.stringify(r)))
    sync.on('status', (st) => console.log('status', sync.clientId.slice(0, 4), st.state, st.pending, st.cursor))
  }
  window.device = {
    sync,
    put: async (row) => { await todos.put(row); await show() },
    update: async (id, changes) => { await todos.update(id, changes); await show() },
    remove: async (id) => { await todos.delete(id); await show() },
    rows: async () => await todos.orderBy('id').toArray(),
    pending: async () => await sync.db.table('pending_ops').count(),
    status: () => ({ ...sync.status, error: sync.status.error === null ? null : String(sync.status.error) }),
    syncNow: async () => { await sync.syncNow() },
    databases: async () => (await indexedDB.databases()).map((d) => d.name)
  }
  await sync.start()
}
