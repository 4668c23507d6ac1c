// The outbox (`pending_ops`) and how its entries become push mutations.
// Every captured change is one entry, keyed by an auto-incremented `seq`: the
// IndexedDB key generator is shared by every tab and never goes back, so
// `seq` doubles as the mutation id, increasing per client id whichever tab
// wrote it. At push time the entries of one client for one row are coalesced
// into as few mutations as possible.

export type SyncOp = 'put' | 'patch' | 'delete'
export type Row = Record<string, unknown>

/** One captured local change, as stored in `pending_ops`. */
export interface PendingOp {
  /** Auto-incremented key: the mutation id sent to the server. */
  seq?: number
  /** The client (tab/instance) that captured it. */
  clientId: string
  /** The Dexie table, which is the sync collection. */
  table: string
  rowId: string
  op: SyncOp
  /** The row without its key (`put`) or the changed top-level fields (`patch`). */
  fields?: Row
  hlc: string
  /** Wall-clock time of the capture (ms), for telemetry. */
  at: number
}

/** A mutation as pushed (`POST /workspaces/{id}/sync/push`). */
export interface Mutation {
  id: number
  collection: string
  rowId: string
  op: SyncOp
  fields?: Row
  hlc: string
}

/** A mutation and the outbox entries it stands for (removed once it is acknowledged). */
export interface OutgoingMutation {
  mutation: Mutation
  seqs: number[]
}

/** Merges `next` into `prev` (same client and row, `next` later); null when they cannot be one mutation. */
export function mergeOps (prev: Mutation, next: PendingOp & { seq: number }): Mutation | null {
  const base = { id: next.seq, collection: prev.collection, rowId: prev.rowId, hlc: next.hlc > prev.hlc ? next.hlc : prev.hlc }
  switch (next.op) {
    case 'put':
    case 'delete':
      // A put replaces the row and a delete removes it: whatever came before is moot.
      return next.op === 'put' ? { ...base, op: 'put', fields: { ...next.fields } } : { ...base, op: 'delete' }
    case 'patch':
      if (prev.op === 'delete') return null
      return { ...base, op: prev.op, fields: { ...prev.fields, ...next.fields } }
  }
}

/**
 * Turns outbox entries (in seq order) into mutations grouped by client id:
 * entries of one client for one row are merged while they can be, a merged
 * mutation takes the id (the largest seq) and clock of its latest entry, and
 * each client's mutations are sorted by id.
 */
export function coalesce (ops: ReadonlyArray<PendingOp & { seq: number }>): Map<string, OutgoingMutation[]> {
  const byClient = new Map<string, OutgoingMutation[]>()
  const open = new Map<string, OutgoingMutation>()
  for (const op of ops) {
    const rowKey = JSON.stringify([op.clientId, op.table, op.rowId])
    const current = open.get(rowKey)
    const merged = current === undefined ? null : mergeOps(current.mutation, op)
    if (current !== undefined && merged !== null) {
      current.mutation = merged
      current.seqs.push(op.seq)
      continue
    }
    const mutation: Mutation = { id: op.seq, collection: op.table, rowId: op.rowId, op: op.op, hlc: op.hlc }
    if (op.op !== 'delete') mutation.fields = { ...op.fields }
    const outgoing = { mutation, seqs: [op.seq] }
    open.set(rowKey, outgoing)
    let list = byClient.get(op.clientId)
    if (list === undefined) { list = []; byClient.set(op.clientId, list) }
    list.push(outgoing)
  }
  for (const list of byClient.values()) list.sort((a, b) => a.mutation.id - b.mutation.id)
  return byClient
}
