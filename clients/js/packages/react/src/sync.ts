// @tandem/react/sync: hooks over the sync engine of @tandem/client/sync.
// `useSync` owns an engine for the component's lifetime (one per workspace),
// `useSyncStatus` follows an engine's status, `useLiveQuery` re-runs a Dexie
// query whenever the tables it read change (local writes and pulled changes).
import { useContext, useEffect, useRef, useState, useSyncExternalStore, type DependencyList } from 'react'
import { liveQuery } from 'dexie'
import { createSync, type Row, type RowTypes, type SyncEngine, type SyncOptions, type SyncStatus } from '@tandem/client/sync'
import type { Tandem } from '@tandem/client'
import { TandemContext } from './index.js'

export interface UseSyncOptions extends Omit<SyncOptions, 'workspaceId' | 'autoStart'> {
  /** The client (default: the TandemProvider's). */
  client?: Tandem
}

export interface SyncView<T extends RowTypes<T>> {
  /** The engine (its `db` holds the tables); null before the first effect and without a workspace. */
  sync: SyncEngine<T> | null
  status: SyncStatus
}

const idleStatus: SyncStatus = { state: 'starting', pending: 0, backpressure: false, live: false, cursor: null, lastSyncedAt: null, error: null, revokedReason: null }
const noop = (): (() => void) => () => {}

/**
 * Keeps the workspace's local database in sync while the component is mounted. Pass a null
 * `workspaceId` to sync nothing. The engine is closed on unmount or when the workspace changes
 * (its outbox stays in IndexedDB and is sent by the next engine). Options are read when the
 * engine is made.
 */
export function useSync<T extends RowTypes<T> = Record<string, Row>> (workspaceId: string | null | undefined, options: UseSyncOptions): SyncView<T> {
  const fromContext = useContext(TandemContext)
  const client = options.client ?? fromContext
  if (client === null) throw new Error('useSync: pass `client` or wrap the app in <TandemProvider>')
  const [sync, setSync] = useState<SyncEngine<T> | null>(null)
  const optionsRef = useRef(options)
  optionsRef.current = options

  useEffect(() => {
    if (!workspaceId) return
    const { client: _client, ...rest } = optionsRef.current
    const engine = createSync<T>(client, { ...rest, workspaceId })
    setSync(engine)
    return () => {
      engine.close()
      setSync((s) => (s === engine ? null : s))
    }
  }, [client, workspaceId, optionsRef])

  return { sync, status: useSyncStatus(sync) }
}

/** An engine's status, re-rendering on every change. */
export function useSyncStatus (engine: Pick<SyncEngine, 'subscribe' | 'getSnapshot'> | null | undefined): SyncStatus {
  return useSyncExternalStore(engine?.subscribe ?? noop, engine?.getSnapshot ?? (() => idleStatus), engine?.getSnapshot ?? (() => idleStatus))
}

/**
 * The result of a Dexie query, kept current: re-run whenever a table it read changes, whether
 * by a local write or by a change the engine pulled. `undefined` until the first result (or
 * `initial`). Re-subscribes when `deps` change.
 */
export function useLiveQuery<R> (query: () => R | Promise<R>, deps: DependencyList, initial?: R): R | undefined {
  const [value, setValue] = useState<R | undefined>(initial)
  const [error, setError] = useState<unknown>(null)
  const queryRef = useRef(query)
  queryRef.current = query
  useEffect(() => {
    const subscription = liveQuery(() => queryRef.current()).subscribe({
      next: (v) => { setError(null); setValue(() => v) },
      error: (e: unknown) => { setError(e) }
    })
    return () => { subscription.unsubscribe() }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps)
  if (error !== null) throw error
  return value
}
