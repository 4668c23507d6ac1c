// @tandem/client/sync: the local-first sync engine (Dexie/IndexedDB, an
// outbox, field-level last-writer-wins by hybrid logical clock). Needs the
// `dexie` peer dependency; the main entry point does not import it.
export {
  createSync, decide, SyncEngine, INTERNAL_TABLES, MAX_ROW_ID_BYTES, MAX_ROW_BYTES, MAX_FIELDS,
  type SyncOptions, type RowTypes, type SyncState, type SyncStatus, type SyncRun, type SyncEvents,
  type RejectedMutation, type RemoteChangeEvent
} from './engine.js'
export { HybridClock, formatHlc, parseHlc, type HlcParts } from './hlc.js'
export { coalesce, mergeOps, type PendingOp, type Mutation, type OutgoingMutation, type Row, type SyncOp } from './outbox.js'
export { PUSH_PATH, PULL_PATH, EVENTS_PATH, type Change, type PullResponse, type PushRequest, type PushResponse, type MutationResult, type Poke, type Revoked } from './wire.js'
