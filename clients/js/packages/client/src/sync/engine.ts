// The local-first sync engine: a Dexie database per workspace whose app
// tables are captured into an outbox by Dexie hooks, pushed in batches, and
// kept up to date by one pull loop driven by the server's pokes.
//
// - Capture: the `creating`/`updating`/`deleting` hooks of every app table
//   write an outbox entry (`pending_ops`) in the same IndexedDB transaction as
//   the change (a DBCore middleware adds `pending_ops` to the scope of every
//   read-write transaction on an app table). Changes the engine applies from
//   the server run in transactions marked as remote, which the hooks skip: no
//   echo.
// - Push: the oldest entries, coalesced per row, one request per client id,
//   retried with exponential backoff and jitter; a batch the server refuses as
//   a whole (400/413/422) is split until the culprit is alone, then dropped as
//   rejected.
// - Pull: pages from the stored cursor, applied in one transaction each with
//   the cursor and the acknowledgements (`lastMutationIds`); a local pending
//   change with a later clock keeps its fields; `reset: true` replaces the
//   tables with the server's state (pending changes re-applied on top).
// - Pokes on the event stream (and a periodic fallback) wake the loop;
//   `revoked` deletes the database.
import { Dexie, type DexieOptions, type Table, type Transaction } from 'dexie'
import { Backoff, type BackoffOptions } from '../backoff.js'
import { Emitter } from '../emitter.js'
import { TandemError, networkError } from '../errors.js'
import type { EventStream } from '../sse.js'
import type { Tandem } from '../tandem.js'
import { HybridClock } from './hlc.js'
import { coalesce, type Mutation, type OutgoingMutation, type PendingOp, type Row } from './outbox.js'
import { EVENTS_PATH, PULL_PATH, PUSH_PATH, type Change, type PullResponse, type PushRequest, type PushResponse } from './wire.js'
import { fillPath } from '../http.js'

/** Tables the engine adds to every workspace database. */
export const INTERNAL_TABLES = ['pending_ops', 'sync_state', 'sync_runs'] as const

export interface SyncOptions {
  /** The workspace whose collections this database mirrors; the database is `tandem-{workspaceId}`. */
  workspaceId: string
  /**
   * The app's tables as Dexie schema strings (`{ todos: 'id, done' }`); each one is a sync
   * collection of the same name. The first entry is the primary key: a property holding a
   * string id (no `++`, no compound or outbound keys).
   */
  tables: Record<string, string>
  /** The Dexie schema version of `tables` (default 1): bump it when the tables change. */
  version?: number
  /** Passed to the Dexie constructor, e.g. `{ indexedDB, IDBKeyRange }` from fake-indexeddb in Node. */
  dexie?: DexieOptions
  /** Outbox entries read per push round (default 100); the server bounds a batch too. */
  batchSize?: number
  /** Largest push body in bytes of JSON (default 256 KiB); a larger batch is sent in parts. */
  maxBatchBytes?: number
  /** Changes asked for per pull page (default 1000, the server's most). */
  pullLimit?: number
  /** Pull this often even without pokes, in ms (default 30 000). */
  pollIntervalMs?: number
  /** Wait this long after a local write before pushing, to batch bursts, in ms (default 10). */
  pushDelayMs?: number
  /** Outbox size at which `status.backpressure` turns true and `backpressure` is emitted (default 10 000). */
  maxPendingOps?: number
  /** Retry delays after a failed round (default 500 ms doubling to 30 s, with jitter). */
  backoff?: BackoffOptions
  /** Listen for pokes and revocation on `/sync/events` (default true). */
  events?: boolean
  /** Keep this many `sync_runs` records (default 200). */
  maxRuns?: number
  /** Start syncing right away (default true); otherwise call `start()`. */
  autoStart?: boolean
}

/**
 * - `starting`: opening the database, before the first round;
 * - `syncing`: a push/pull round is running;
 * - `idle`: the last round succeeded (the outbox may have filled since: see `pending`);
 * - `offline`: the last round could not reach the server (retrying with backoff);
 * - `error`: the last round failed otherwise (retrying with backoff, see `error`);
 * - `revoked`: access ended and the local database was deleted (final);
 * - `closed`: `close()` was called (final).
 */
export type SyncState = 'starting' | 'syncing' | 'idle' | 'offline' | 'error' | 'revoked' | 'closed'

export interface SyncStatus {
  state: SyncState
  /** Entries in the outbox (changes not yet acknowledged by the server). */
  pending: number
  /** True while `pending >= maxPendingOps`: the app should slow down or warn the user. */
  backpressure: boolean
  /** The event stream is open (pokes arrive). */
  live: boolean
  /** The server cursor the tables reflect (opaque). */
  cursor: string | null
  /** When the last round finished successfully (ms since the epoch). */
  lastSyncedAt: number | null
  /** The last round's failure, when `state` is `offline` or `error`. */
  error: unknown
  /** Why access ended, when `state` is `revoked`. */
  revokedReason: string | null
}

/** A record of one push or pull request (table `sync_runs` and the `run` event). */
export interface SyncRun {
  id?: number
  kind: 'push' | 'pull'
  startedAt: number
  durationMs: number
  ok: boolean
  /** Mutations sent (push) or changes received (pull). */
  count: number
  /** JSON bytes sent (push) or received (pull). */
  bytes: number
  clientId?: string
  /** Rejected mutations (push) or whether the page was a reset (pull). */
  rejected?: number
  reset?: boolean
  error?: string
}

export interface RejectedMutation {
  mutation: Mutation
  error: unknown
}

export interface RemoteChangeEvent {
  /** Row ids changed by the server, per table. */
  tables: Record<string, string[]>
  reset: boolean
}

export interface SyncEvents {
  status: [status: SyncStatus]
  /** Changes from the server were applied to the tables. */
  change: [event: RemoteChangeEvent]
  /** The server refused a mutation (e.g. the user is a viewer); the engine then re-reads the server's state. */
  rejected: [rejected: RejectedMutation[]]
  /** The outbox crossed `maxPendingOps` (true) or went back under it (false). */
  backpressure: [on: boolean]
  /** Access ended: the local database has been deleted. */
  revoked: [reason: string]
  run: [run: SyncRun]
  /** A round failed (it is retried with backoff). */
  error: [error: unknown]
}

interface SyncStateRecord {
  key: 'state'
  clientGroupId: string
  cursor: string | null
  lastMutationIds: Record<string, number>
  /** The latest clock seen (so a restarted client never issues an older one). */
  clock: string | null
  /** The app tables the cursor covers: a new table means the state must be read again. */
  tables?: string[]
}

type Rows = Table<Row, string>
type StoredOp = PendingOp & { seq: number }

const NAME_RE = /^[A-Za-z][A-Za-z0-9_]{0,63}$/
/** The server's bounds on one row (`crates/protocol/src/sync.rs`). */
export const MAX_ROW_ID_BYTES = 256
export const MAX_ROW_BYTES = 64 * 1024
export const MAX_FIELDS = 256
const encoder = new TextEncoder()
const REJECTABLE = new Set([400, 413, 422])

function randomId (): string {
  const bytes = new Uint8Array(12)
  globalThis.crypto.getRandomValues(bytes)
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
}

function isRevocation (err: unknown): boolean {
  return err instanceof TandemError && err.status === 404 && err.code === 'not_found'
}

/** The app's row type per table (`{ todos: Todo }`): objects, interfaces included. */
export type RowTypes<T> = { [K in keyof T]: object }

/** Creates (and by default starts) the sync engine of one workspace. */
export function createSync<T extends RowTypes<T> = Record<string, Row>> (tandem: Tandem, options: SyncOptions): SyncEngine<T> {
  return new SyncEngine<T>(tandem, options)
}

export class SyncEngine<T extends RowTypes<T> = Record<string, Row>> extends Emitter<SyncEvents> {
  /** The workspace database: the app's tables plus `pending_ops`, `sync_state`, `sync_runs`. */
  readonly db: Dexie & { [K in keyof T]: Table<T[K], string> }
  /** This instance's client id (one per tab/instance; mutation ids increase per client id). */
  readonly clientId = randomId()
  readonly workspaceId: string
  private readonly clock: HybridClock
  private readonly tableNames: string[]
  private readonly keyPaths = new Map<string, string>()
  /** IndexedDB transactions that apply server changes: the capture hooks skip them. */
  private readonly remoteTxs = new WeakSet<object>()
  private readonly watchedTxs = new WeakSet<object>()
  private readonly backoff: Backoff
  private readonly abort = new AbortController()
  private current: SyncStatus = { state: 'starting', pending: 0, backpressure: false, live: false, cursor: null, lastSyncedAt: null, error: null, revokedReason: null }
  private clientGroupId = ''
  private started: Promise<void> | null = null
  private stream: EventStream | null = null
  private timer: ReturnType<typeof setTimeout> | undefined
  private timerDue = 0
  private poll: ReturnType<typeof setInterval> | undefined
  private queued: Promise<void> | null = null
  private chain: Promise<void> = Promise.resolve()
  private failing = false
  private forceReset = false
  private runsWritten = 0
  private readonly onOnline = (): void => { this.kick(0, true) }

  constructor (private readonly tandem: Tandem, private readonly options: SyncOptions) {
    super()
    if (!/^[A-Za-z0-9_-]{1,128}$/.test(options.workspaceId)) throw new TypeError(`invalid workspace id "${options.workspaceId}"`)
    this.workspaceId = options.workspaceId
    this.clock = new HybridClock(this.clientId)
    this.backoff = new Backoff(options.backoff ?? { initialMs: 500, maxMs: 30_000 })
    this.tableNames = Object.keys(options.tables)
    if (this.tableNames.length === 0) throw new TypeError('createSync: declare at least one table')
    for (const name of this.tableNames) {
      if (!NAME_RE.test(name) || (INTERNAL_TABLES as readonly string[]).includes(name)) throw new TypeError(`createSync: invalid table name "${name}"`)
      const key = (options.tables[name] ?? '').split(',')[0]?.trim() ?? ''
      if (!/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key)) throw new TypeError(`createSync: table "${name}" needs a plain primary key property (got "${key}"): no ++, &, compound, dotted or outbound keys`)
      this.keyPaths.set(name, key)
    }
    const db = new Dexie(`tandem-${options.workspaceId}`, options.dexie)
    db.version(options.version ?? 1).stores({
      ...options.tables,
      pending_ops: '++seq, [table+rowId], [clientId+seq]',
      sync_state: 'key',
      sync_runs: '++id'
    })
    const synced = new Set(this.tableNames)
    // Every read-write transaction on an app table can also write the outbox.
    db.use({
      stack: 'dbcore',
      name: 'TandemSyncOutboxScope',
      create: (down) => ({
        ...down,
        transaction: (stores, mode, opts) => down.transaction(
          mode === 'readwrite' && stores.some((s) => synced.has(s)) && !stores.includes('pending_ops') ? [...stores, 'pending_ops'] : stores,
          mode, opts)
      })
    })
    this.db = db as SyncEngine<T>['db']
    for (const name of this.tableNames) this.installHooks(name)
    if (options.autoStart !== false) void this.start().catch(() => {})
  }

  // ---- public API ----

  get status (): SyncStatus { return this.current }
  readonly getSnapshot = (): SyncStatus => this.current
  readonly subscribe = (onChange: () => void): (() => void) => this.on('status', onChange)

  /** Opens the database and starts the loops (idempotent). */
  start (): Promise<void> {
    this.started ??= this.open()
    return this.started
  }

  /**
   * One push-then-pull round now (after the one running, if any); resolves when it is done and
   * rejects with its error. The background loop retries failures by itself.
   */
  async syncNow (): Promise<void> {
    await this.start()
    if (this.queued !== null) return await this.queued
    const run = this.chain.catch(() => {}).then(async () => {
      this.queued = null
      await this.round()
    })
    this.queued = run
    this.chain = run
    return await run
  }

  /** Resolves once the outbox is below `maxPendingOps` (at once if it is). */
  async waitForCapacity (): Promise<void> {
    while (this.current.backpressure && !this.isFinal()) {
      await new Promise<void>((resolve) => { const off = this.on('status', () => { off(); resolve() }) })
    }
  }

  /** Re-reads the whole state from the server on the next round (local pending changes are kept). */
  resync (): void {
    this.forceReset = true
    this.kick(0, true)
  }

  /** Stops syncing and closes the database (its outbox stays for the next instance). */
  close (): void {
    if (this.isFinal()) return
    this.stop()
    this.db.close()
    this.update({ state: 'closed', live: false })
    this.removeAllListeners()
  }

  /**
   * Stops and deletes the local database, unsent changes included (e.g. on sign-out: the
   * next user of this browser must not push the previous user's outbox, which the server
   * would refuse with 403 since client ids belong to their user).
   */
  async deleteLocalData (): Promise<void> {
    if (this.current.state === 'revoked') return
    this.stop()
    this.update({ state: 'closed', live: false })
    this.db.close()
    await this.db.delete({ disableAutoOpen: true })
    this.removeAllListeners()
  }

  // ---- capture ----

  private installHooks (name: string): void {
    const table = this.db.table(name)
    const keyPath = this.keyPaths.get(name) as string
    const engine = this
    const strip = (obj: Row): Row => {
      const fields: Row = { ...obj }
      delete fields[keyPath]
      return fields
    }
    // Remote transactions are checked first: applying a pull page costs no copying here.
    table.hook('creating', function (primKey, obj, trans) {
      if (engine.remoteTxs.has(trans.idbtrans)) return
      engine.capture(trans, name, primKey, 'put', strip(obj as Row))
    })
    table.hook('updating', function (mods, primKey, obj, trans) {
      if (engine.remoteTxs.has(trans.idbtrans)) return
      const changed = Object.keys(mods)
      if (changed.length === 0) return
      const next = Dexie.deepClone(obj as Row)
      for (const path of changed) {
        const value = (mods as Row)[path]
        if (value === undefined) Dexie.delByKeyPath(next, path)
        else Dexie.setByKeyPath(next, path, value)
      }
      const top = new Set(changed.map((p) => p.split('.')[0] as string))
      // A removed field cannot be patched (JSON has no undefined): send the whole row.
      if ([...top].some((f) => !(f in next))) {
        engine.capture(trans, name, primKey, 'put', strip(next))
        return
      }
      const fields: Row = {}
      for (const f of top) if (f !== keyPath) fields[f] = next[f]
      engine.capture(trans, name, primKey, 'patch', fields)
    })
    table.hook('deleting', function (primKey, _obj, trans) {
      engine.capture(trans, name, primKey, 'delete', undefined)
    })
  }

  private capture (trans: Transaction, table: string, key: unknown, op: PendingOp['op'], fields: Row | undefined): void {
    const idb = trans.idbtrans
    if (this.remoteTxs.has(idb)) return
    if (typeof key !== 'string' || key === '') throw new TypeError(`sync: rows of "${table}" need a non-empty string key`)
    // The server's bounds (proto-docs/sync.md): refuse here, where the app sees the error,
    // rather than have the server reject the change after it was shown locally.
    if (encoder.encode(key).length > MAX_ROW_ID_BYTES) throw new RangeError(`sync: a row id of "${table}" is longer than ${MAX_ROW_ID_BYTES} bytes`)
    if (fields !== undefined) {
      if (Object.keys(fields).length > MAX_FIELDS) throw new RangeError(`sync: a row of "${table}" has more than ${MAX_FIELDS} fields`)
      if (encoder.encode(JSON.stringify(fields)).length > MAX_ROW_BYTES) throw new RangeError(`sync: a row of "${table}" is larger than ${MAX_ROW_BYTES} bytes of JSON`)
    }
    const entry: PendingOp = { clientId: this.clientId, table, rowId: key, op, hlc: this.clock.now(), at: Date.now() }
    if (fields !== undefined) entry.fields = fields
    idb.objectStore('pending_ops').add(entry)
    if (!this.watchedTxs.has(idb)) {
      this.watchedTxs.add(idb)
      idb.addEventListener('complete', () => {
        void this.refreshPending().catch(() => {})
        this.kick(this.options.pushDelayMs ?? 10, false)
      })
    }
  }

  // ---- lifecycle ----

  private async open (): Promise<void> {
    await this.db.open()
    const state = await this.db.transaction('rw', 'sync_state', async () => {
      const table = this.db.table<SyncStateRecord, string>('sync_state')
      let s = await table.get('state')
      const tables = [...this.tableNames].sort()
      if (s === undefined) {
        s = { key: 'state', clientGroupId: randomId(), cursor: null, lastMutationIds: {}, clock: null, tables }
        await table.put(s)
      } else if (JSON.stringify(s.tables ?? []) !== JSON.stringify(tables)) {
        // Pulls so far skipped collections this version declares: read everything again.
        if (s.cursor !== null && tables.some((t) => !(s?.tables ?? []).includes(t))) this.forceReset = true
        s = { ...s, tables }
        await table.put(s)
      }
      return s
    })
    this.clientGroupId = state.clientGroupId
    if (state.clock !== null) this.clock.receive(state.clock)
    const last = await this.outbox().orderBy('seq').last()
    if (last !== undefined) this.clock.receive(last.hlc)
    this.update({ cursor: state.cursor })
    await this.refreshPending()
    if (this.isFinal()) return
    if (this.options.events !== false) this.listen()
    this.poll = setInterval(() => this.kick(0, false), this.options.pollIntervalMs ?? 30_000)
    globalThis.addEventListener?.('online', this.onOnline)
    this.kick(0, true)
  }

  private listen (): void {
    const path = fillPath(EVENTS_PATH, { id: this.workspaceId })
    const stream = this.tandem.eventStream(path, { isFinal: (e) => e.event === 'revoked', backoff: this.options.backoff ?? { initialMs: 500, maxMs: 30_000 } })
    this.stream = stream
    stream.on('status', (s) => {
      this.update({ live: s === 'open' })
      if (s === 'open') this.kick(0, true)
    })
    stream.on('event', (e) => {
      if (e.event === 'poke') {
        let cursor: unknown = null
        try { cursor = (JSON.parse(e.data) as { cursor?: unknown }).cursor } catch { /* a poke without a body still wakes us */ }
        if (cursor === undefined || cursor === null || cursor !== this.current.cursor) this.kick(0, true)
      } else if (e.event === 'revoked') {
        let reason = 'revoked'
        try { reason = String((JSON.parse(e.data) as { reason?: unknown }).reason ?? reason) } catch { /* keep the default */ }
        void this.purge(reason)
      }
    })
    stream.on('error', (err) => {
      if (isRevocation(err)) void this.confirmRevoked().catch(() => {})
    })
  }

  private stop (): void {
    clearTimeout(this.timer)
    clearInterval(this.poll)
    this.timer = undefined
    this.stream?.close()
    this.stream = null
    this.abort.abort()
    globalThis.removeEventListener?.('online', this.onOnline)
  }

  private isFinal (): boolean {
    return this.current.state === 'revoked' || this.current.state === 'closed'
  }

  /**
   * A 404 from a sync endpoint means the workspace is gone for this user, or that the endpoint
   * is (a server without sync, a proxy's path): control answers `not_found` to both. Deleting
   * the database (and its unsent outbox) on the second would lose data, so the session decides:
   * purge only when the workspace is no longer among the user's. True when purged.
   */
  private async confirmRevoked (): Promise<boolean> {
    const session = await this.tandem.api.get('/auth/session', { signal: this.abort.signal })
    if (session.workspaces.some((w) => w.id === this.workspaceId)) return false
    await this.purge('not_found')
    return true
  }

  /** Access ended: stop, delete the database, tell the app. */
  private async purge (reason: string): Promise<void> {
    if (this.isFinal()) return
    this.stop()
    this.update({ state: 'revoked', revokedReason: reason, live: false, pending: 0, backpressure: false })
    try {
      await this.db.delete({ disableAutoOpen: true })
    } catch (err) {
      this.emit('error', err)
    }
    this.emit('revoked', reason)
  }

  // ---- the loop ----

  /** Schedules a round in `delay` ms. While failing, only `urgent` wake-ups (poke, stream open, online) cut the backoff short. */
  private kick (delay: number, urgent: boolean): void {
    if (this.isFinal() || this.started === null) return
    if (this.failing && !urgent && this.timer !== undefined) return
    const due = Date.now() + delay
    if (this.timer !== undefined && this.timerDue <= due) return
    clearTimeout(this.timer)
    this.timerDue = due
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.background()
    }, delay)
  }

  private async background (): Promise<void> {
    try {
      await this.syncNow()
      this.failing = false
      this.backoff.reset()
    } catch (err) {
      if (this.isFinal()) return
      this.failing = true
      this.emit('error', err)
      const retryAfter = err instanceof TandemError && err.retryAfter !== undefined ? err.retryAfter * 1000 : 0
      this.kick(Math.max(this.backoff.next(), retryAfter), false)
    }
  }

  private async round (): Promise<void> {
    if (this.isFinal()) return
    this.update({ state: 'syncing' })
    try {
      // A failed push does not hold back the pull (a 5xx on one batch, a 403 on an old client
      // id): the pull is safe with pending entries, and the push is retried with the round.
      let pushError: unknown = null
      await this.pushAll().catch((err: unknown) => { pushError = err })
      if (pushError !== null && isRevocation(pushError)) throw pushError
      await this.pullAll()
      if (pushError !== null) throw pushError
      if (!this.isFinal()) this.update({ state: 'idle', error: null, lastSyncedAt: Date.now() })
    } catch (err) {
      if (this.isFinal()) return
      if (isRevocation(err) && await this.confirmRevoked().catch(() => false)) return
      const error = err instanceof TandemError ? err : err instanceof Error && err.name === 'DatabaseClosedError' ? err : networkError(err)
      this.update({ state: error instanceof TandemError && error.status === 0 ? 'offline' : 'error', error })
      throw error
    }
  }

  private outbox (): Table<StoredOp, number> {
    return this.db.table<StoredOp, number>('pending_ops')
  }

  private async refreshPending (): Promise<void> {
    if (this.isFinal()) return
    const pending = await this.outbox().count()
    const max = this.options.maxPendingOps ?? 10_000
    const backpressure = pending >= max
    const changed = backpressure !== this.current.backpressure
    this.update({ pending, backpressure })
    if (changed) this.emit('backpressure', backpressure)
  }

  // ---- push ----

  private async pushAll (): Promise<void> {
    const batchSize = Math.max(1, this.options.batchSize ?? 100)
    for (;;) {
      const ops = await this.outbox().orderBy('seq').limit(batchSize).toArray()
      if (ops.length === 0) break
      const before = ops.length
      for (const [clientId, list] of coalesce(ops)) {
        for (const part of this.bySize(clientId, list)) await this.pushPart(clientId, part)
      }
      await this.refreshPending()
      const left = await this.outbox().where('seq').anyOf(ops.map((o) => o.seq)).count()
      if (left === before) throw new TandemError({ status: 0, code: 'sync_stalled', message: 'the server acknowledged none of the pushed mutations' })
    }
  }

  /** Splits one client's mutations into requests of at most `maxBatchBytes` of JSON. */
  private bySize (clientId: string, list: OutgoingMutation[]): OutgoingMutation[][] {
    const max = this.options.maxBatchBytes ?? 256 * 1024
    const overhead = JSON.stringify({ clientGroupId: this.clientGroupId, clientId, mutations: [] }).length
    const parts: OutgoingMutation[][] = []
    let part: OutgoingMutation[] = []
    let size = overhead
    for (const m of list) {
      const bytes = JSON.stringify(m.mutation).length + 1
      if (part.length > 0 && size + bytes > max) { parts.push(part); part = []; size = overhead }
      part.push(m)
      size += bytes
    }
    if (part.length > 0) parts.push(part)
    return parts
  }

  private async pushPart (clientId: string, part: OutgoingMutation[]): Promise<void> {
    const request: PushRequest = { clientGroupId: this.clientGroupId, clientId, mutations: part.map((m) => m.mutation) }
    const body = JSON.stringify(request)
    const startedAt = Date.now()
    let res: PushResponse
    try {
      res = await this.request<PushResponse>(fillPath(PUSH_PATH, { id: this.workspaceId }), { method: 'POST', body, headers: { 'content-type': 'application/json' } })
    } catch (err) {
      void this.record({ kind: 'push', startedAt, durationMs: Date.now() - startedAt, ok: false, count: part.length, bytes: body.length, clientId, error: String(err) })
      if (err instanceof TandemError && REJECTABLE.has(err.status)) {
        if (part.length > 1) {
          const half = Math.ceil(part.length / 2)
          await this.pushPart(clientId, part.slice(0, half))
          await this.pushPart(clientId, part.slice(half))
          return
        }
        const only = part[0] as OutgoingMutation
        await this.acknowledge(clientId, only.seqs, null)
        this.rejected([{ mutation: only.mutation, error: err }])
        return
      }
      throw err
    }
    const results = new Map((Array.isArray(res.results) ? res.results : []).map((r) => [r.id, r]))
    const done: number[] = []
    const rejected: RejectedMutation[] = []
    for (const m of part) {
      const r = results.get(m.mutation.id)
      if (r === undefined) continue
      done.push(...m.seqs)
      if (r.status === 'rejected') rejected.push({ mutation: m.mutation, error: r.error })
    }
    await this.acknowledge(clientId, done, typeof res.lastMutationId === 'number' ? res.lastMutationId : null)
    void this.record({ kind: 'push', startedAt, durationMs: Date.now() - startedAt, ok: true, count: part.length, bytes: body.length, clientId, rejected: rejected.length })
    if (rejected.length > 0) this.rejected(rejected)
  }

  private rejected (list: RejectedMutation[]): void {
    // The local rows show changes the server refused: read the server's state again.
    this.forceReset = true
    this.emit('rejected', list)
  }

  /** Removes acknowledged entries and records the client's last mutation id, in one transaction. */
  private async acknowledge (clientId: string, seqs: number[], lastMutationId: number | null): Promise<void> {
    await this.db.transaction('rw', ['pending_ops', 'sync_state'], async () => {
      await this.outbox().bulkDelete(seqs)
      if (lastMutationId !== null) {
        const states = this.db.table<SyncStateRecord, string>('sync_state')
        const s = await states.get('state')
        if (s !== undefined) {
          s.lastMutationIds = { ...s.lastMutationIds, [clientId]: Math.max(s.lastMutationIds[clientId] ?? 0, lastMutationId) }
          await states.put(s)
        }
      }
    })
  }

  // ---- pull ----

  private async pullAll (): Promise<void> {
    const limit = Math.max(1, this.options.pullLimit ?? 1000)
    const states = this.db.table<SyncStateRecord, string>('sync_state')
    let resetting = this.forceReset
    this.forceReset = false
    let cursor = resetting ? null : (await states.get('state'))?.cursor ?? null
    const gathered: Change[] = []
    const acks: Record<string, number> = {}
    for (;;) {
      const query = new URLSearchParams({ limit: String(limit), clientGroupId: this.clientGroupId })
      if (cursor !== null) query.set('cursor', cursor)
      const startedAt = Date.now()
      let page: PullResponse
      let bytes = 0
      try {
        page = await this.request<PullResponse>(`${fillPath(PULL_PATH, { id: this.workspaceId })}?${query.toString()}`, { method: 'GET' }, (n) => { bytes = n })
      } catch (err) {
        void this.record({ kind: 'pull', startedAt, durationMs: Date.now() - startedAt, ok: false, count: 0, bytes, error: String(err) })
        if (resetting) this.forceReset = true
        throw err
      }
      const changes = Array.isArray(page.changes) ? page.changes : []
      void this.record({ kind: 'pull', startedAt, durationMs: Date.now() - startedAt, ok: true, count: changes.length, bytes, reset: page.reset === true })
      for (const c of changes) this.clock.receive(String(c.hlc))
      if (page.reset === true && !resetting) { resetting = true; gathered.length = 0 }
      Object.assign(acks, page.lastMutationIds ?? {})
      const more = page.hasMore === true && page.cursor !== cursor
      if (resetting) {
        gathered.push(...changes)
        if (!more) await this.apply(gathered, page.cursor, acks, true)
      } else {
        await this.apply(changes, page.cursor, page.lastMutationIds ?? {}, false)
      }
      cursor = page.cursor
      if (!more) break
    }
  }

  /**
   * Applies server changes (a page, or the whole state when `reset`) with the cursor and the
   * acknowledgements in one transaction that the capture hooks ignore.
   */
  private async apply (changes: Change[], cursor: string, acks: Record<string, number>, reset: boolean): Promise<void> {
    const touched: Record<string, string[]> = {}
    await this.db.transaction('rw', [...this.tableNames, 'pending_ops', 'sync_state'], async (tx) => {
      this.remoteTxs.add(tx.idbtrans)
      const outbox = this.outbox()
      const states = this.db.table<SyncStateRecord, string>('sync_state')
      const s = await states.get('state')
      // Only acknowledgements that moved: the group's list holds every client it ever had.
      for (const [clientId, last] of Object.entries(acks)) {
        if (typeof last !== 'number' || last <= (s?.lastMutationIds[clientId] ?? 0)) continue
        await outbox.where('[clientId+seq]').between([clientId, Dexie.minKey], [clientId, last], true, true).delete()
      }
      const pending = new Map<string, StoredOp[]>()
      // A reset needs every pending entry; a page only those of its rows.
      const entries = reset
        ? await outbox.orderBy('seq').toArray()
        : await outbox.where('[table+rowId]').anyOf(changes.filter((c) => typeof c.collection === 'string' && typeof c.rowId === 'string').map((c) => [c.collection, c.rowId])).toArray()
      entries.sort((x, y) => x.seq - y.seq)
      for (const op of entries) {
        const k = `${op.table}\u0000${op.rowId}`
        const list = pending.get(k)
        if (list === undefined) pending.set(k, [op]); else list.push(op)
      }
      const byTable = new Map<string, Change[]>()
      for (const c of changes) {
        if (!this.keyPaths.has(c.collection) || typeof c.rowId !== 'string') continue
        const list = byTable.get(c.collection)
        if (list === undefined) byTable.set(c.collection, [c]); else list.push(c)
      }
      for (const name of this.tableNames) {
        const list = byTable.get(name) ?? []
        if (list.length === 0 && !reset) continue
        const table = this.db.table(name) as Rows
        const keyPath = this.keyPaths.get(name) as string
        const ids = new Set(list.map((c) => c.rowId))
        if (reset) for (const op of pending.values()) if (op[0]?.table === name) ids.add(op[0].rowId)
        // Local rows matter only where pending entries are (decide() and a reset keep their
        // fields): read just those.
        const idList = [...ids].filter((id) => pending.has(`${name}\u0000${id}`))
        const existing = new Map<string, Row>()
        for (const [i, row] of (await table.bulkGet(idList)).entries()) if (row !== undefined) existing.set(idList[i] as string, row)
        if (reset) await table.clear()
        const final = new Map<string, Row | null>()
        for (const c of list) {
          const local = pending.get(`${name}\u0000${c.rowId}`) ?? []
          const next = decide(c, existing.get(c.rowId), local, keyPath)
          if (next !== 'keep') final.set(c.rowId, next)
          else if (reset) final.set(c.rowId, existing.get(c.rowId) ?? null)
          else final.delete(c.rowId) // the local row stays as it is
        }
        if (reset) {
          // Rows the server does not have but local pending changes made: keep them.
          for (const id of ids) if (!final.has(id) && existing.has(id)) final.set(id, existing.get(id) as Row)
        }
        const puts: Row[] = []
        const deletes: string[] = []
        for (const [id, row] of final) {
          if (row === null) deletes.push(id); else puts.push(row)
        }
        if (puts.length > 0) await table.bulkPut(puts)
        if (deletes.length > 0 && !reset) await table.bulkDelete(deletes)
        if (list.length > 0 || reset) touched[name] = [...final.keys()]
      }
      if (s !== undefined) {
        const lastMutationIds = { ...s.lastMutationIds }
        for (const [clientId, last] of Object.entries(acks)) {
          if (typeof last === 'number') lastMutationIds[clientId] = Math.max(lastMutationIds[clientId] ?? 0, last)
        }
        const newest = changes.reduce<string | null>((m, c) => (m === null || c.hlc > m ? c.hlc : m), s.clock)
        await states.put({ ...s, cursor, lastMutationIds, clock: newest })
      }
    })
    this.update({ cursor })
    if (Object.keys(touched).length > 0 || reset) this.emit('change', { tables: touched, reset })
    await this.refreshPending()
  }

  // ---- plumbing ----

  /** One JSON request (through `fetchRaw`, to count the bytes for `sync_runs`). */
  private async request<R> (path: string, init: RequestInit, onBytes?: (n: number) => void): Promise<R> {
    const res = await this.tandem.api.fetchRaw(path, { ...init, headers: { accept: 'application/json', ...(init.headers as Record<string, string> | undefined) }, signal: this.abort.signal })
    let text: string
    try {
      text = await res.text()
    } catch (err) {
      throw networkError(err)
    }
    onBytes?.(text.length)
    try {
      return JSON.parse(text) as R
    } catch (err) {
      throw new TandemError({ status: res.status, code: 'bad_response', message: 'the sync endpoint answered with a body that is not JSON', cause: err })
    }
  }

  /** Emits and stores a run record; not awaited, so telemetry stays off the critical path. */
  private async record (run: SyncRun): Promise<void> {
    this.emit('run', run)
    if (this.isFinal()) return
    try {
      const runs = this.db.table<SyncRun, number>('sync_runs')
      const id = await runs.add(run)
      if (++this.runsWritten % 20 === 0) await runs.where('id').below(id - (this.options.maxRuns ?? 200) + 1).delete()
    } catch {
      // Telemetry never breaks syncing.
    }
  }

  private update (patch: Partial<SyncStatus>): void {
    if (this.isFinal() && patch.state !== undefined) return
    const next = { ...this.current, ...patch }
    if ((Object.keys(patch) as Array<keyof SyncStatus>).every((k) => next[k] === this.current[k])) return
    this.current = next
    this.emit('status', next)
  }
}

/**
 * What a server change makes of a local row: the new row, null (deleted), or 'keep' when a
 * pending local put/delete is later than it. Fields of later pending patches keep their local
 * values; everything else takes the server's (which is the last-writer-wins outcome: a pending
 * change with an older clock will lose on the server too).
 */
export function decide (change: Change, local: Row | undefined, pending: PendingOp[], keyPath: string): Row | null | 'keep' {
  const newer = pending.filter((op) => op.hlc > change.hlc)
  if (newer.some((op) => op.op === 'put' || op.op === 'delete')) return 'keep'
  if (change.deleted || change.fields === null || typeof change.fields !== 'object') return null
  const row: Row = { ...change.fields, [keyPath]: change.rowId }
  if (local !== undefined) {
    for (const op of newer) {
      for (const f of Object.keys(op.fields ?? {})) {
        if (f in local) row[f] = local[f]
        else delete row[f]
      }
    }
  }
  return row
}
