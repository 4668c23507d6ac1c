// The sync endpoints' bodies (ARCHITECTURE.md, "Sync engine").
import type { Mutation, Row } from './outbox.js'

export interface PushRequest {
  clientGroupId: string
  clientId: string
  mutations: Mutation[]
}

export interface MutationResult {
  id: number
  status: 'applied' | 'duplicate' | 'rejected'
  error?: unknown
}

export interface PushResponse {
  lastMutationId: number
  results: MutationResult[]
}

export interface Change {
  collection: string
  rowId: string
  fields: Row | null
  deleted: boolean
  hlc: string
}

export interface PullResponse {
  cursor: string
  hasMore: boolean
  reset: boolean
  changes: Change[]
  lastMutationIds: Record<string, number>
}
