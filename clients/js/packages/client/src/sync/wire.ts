// The sync endpoints' bodies (ARCHITECTURE.md, "Sync engine"; proto-docs/sync.md), from the
// generated OpenAPI types. Three spots are narrowed by hand because the document is looser
// than the wire: `fields` is generated as `Record<string, never>` (it is any JSON object),
// and `op` / `status` as plain strings (they are the enums below).
import type { components, PathsWith } from '../http.js'
import type { Mutation, Row } from './outbox.js'

type Schemas = components['schemas']

/** The endpoints, checked against the OpenAPI document at compile time. */
export const PUSH_PATH = '/workspaces/{id}/sync/push' satisfies PathsWith<'post'>
export const PULL_PATH = '/workspaces/{id}/sync/pull' satisfies PathsWith<'get'>
export const EVENTS_PATH = '/workspaces/{id}/sync/events' satisfies PathsWith<'get'>

export type PushRequest = Omit<Schemas['PushRequest'], 'mutations'> & { mutations: Mutation[] }

export type MutationResult = Omit<Schemas['MutationResult'], 'status'> & {
  status: 'applied' | 'duplicate' | 'rejected'
}

export type PushResponse = Omit<Schemas['PushResponse'], 'results'> & { results: MutationResult[] }

/** One row's whole current state (`fields: null` when deleted). */
export type Change = Omit<Schemas['Change'], 'fields'> & { fields: Row | null }

export type PullResponse = Omit<Schemas['PullResponse'], 'changes'> & { changes: Change[] }

export type Poke = Schemas['Poke']
export type Revoked = Schemas['Revoked']

// The hand-written Mutation must keep every generated field with a compatible type.
type Generated = Omit<Schemas['Mutation'], 'fields' | 'op'>
const mutationFits = (m: Mutation): Generated => m
void mutationFits
