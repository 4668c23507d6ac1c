// Live lists: projects, documents (diagrams, tasks) and conversations of a
// workspace kept current from its event stream (GET /workspaces/{id}/events).
// One stream per workspace is shared by every list watching it: on `ready`
// (and `reset`) each list loads its items through the REST endpoints, then
// applies the events that follow; a dropped stream resumes with
// Last-Event-ID, so nothing is reloaded and nothing is missed.
import { Emitter } from './emitter.js'
import type { HttpClient, ItemOf } from './http.js'
import { EventStream, type EventStreamOptions, type ServerSentEvent, type StreamStatus } from './sse.js'

export type Project = ItemOf<'/workspaces/{id}/projects'>
export type Resource = ItemOf<'/projects/{id}/documents'>
export type ConversationItem = ItemOf<'/conversations'>

/** One change of `GET /workspaces/{id}/events` (the `data:` of a change event). */
export interface WorkspaceEvent {
  seq: number
  /** `{entity}.{op}`, e.g. `document.updated`. */
  kind: string
  id: string
  projectId: string | null
  data: Record<string, unknown>
}

export interface WorkspaceFeedEvents {
  /** `ready` or `reset`: lists (re)load from REST. */
  start: [kind: 'ready' | 'reset']
  event: [event: WorkspaceEvent]
  status: [status: StreamStatus]
  /** The reader lost the workspace: the stream has ended for good. */
  revoked: [reason: string]
  error: [error: unknown]
}

/** The event stream of one workspace, shared by the lists watching it. */
export class WorkspaceFeed extends Emitter<WorkspaceFeedEvents> {
  private readonly stream: EventStream
  private users = 0
  private revokedReason: string | null = null

  constructor (private readonly http: HttpClient, readonly workspaceId: string, options: Omit<EventStreamOptions, 'isFinal'> = {}) {
    super()
    const path = `/workspaces/${encodeURIComponent(workspaceId)}/events`
    this.stream = new EventStream(
      (headers, signal) => this.http.fetchRaw(path, { headers, signal }),
      { ...options, isFinal: (e) => e.event === 'revoked' }
    )
    this.stream.on('event', (e) => this.dispatch(e))
    this.stream.on('status', (s) => this.emit('status', s))
    this.stream.on('error', (err) => this.emit('error', err))
  }

  get status (): StreamStatus { return this.stream.status }
  get revoked (): string | null { return this.revokedReason }
  get lastEventId (): string | undefined { return this.stream.lastEventId }
  /** Requests made by the underlying stream (1 + reconnects). */
  get connections (): number { return this.stream.connections }

  /** Counts a list using the feed; `release()` closes it with its last user. */
  retain (): void { this.users++ }
  release (): void {
    this.users--
    if (this.users <= 0) this.close()
  }

  close (): void {
    this.stream.close()
    this.removeAllListeners()
  }

  private dispatch (e: ServerSentEvent): void {
    let data: unknown
    try { data = JSON.parse(e.data) } catch (err) { this.emit('error', err); return }
    if (e.event === 'ready' || e.event === 'reset') { this.emit('start', e.event); return }
    if (e.event === 'revoked') {
      const reason = (data as { reason?: unknown } | null)?.reason
      this.revokedReason = typeof reason === 'string' ? reason : 'revoked'
      this.emit('revoked', this.revokedReason)
      return
    }
    const event = data as WorkspaceEvent
    if (event === null || typeof event !== 'object' || typeof event.kind !== 'string') return
    this.emit('event', event)
  }
}

export interface LiveListState<T> {
  /** In the order the REST list gives them; a new array after every change. */
  items: readonly T[]
  /** False until the first load finished. */
  loaded: boolean
  status: StreamStatus
  /** Set once the reader lost the workspace: the list stops changing. */
  revoked: string | null
  error: unknown
}

export interface LiveListEvents<T> {
  change: [state: LiveListState<T>]
}

interface ListSpec<T> {
  /** Loads every item through REST. */
  load: () => Promise<T[]>
  /** The event concerns this list: `upsert` (with the item) or `remove`, else null. */
  classify: (e: WorkspaceEvent) => { upsert: T } | { remove: string } | null
  /** Sort order (negative: a before b). */
  compare: (a: T, b: T) => number
}

/** A list kept live from a workspace's event stream; `close()` when done. */
export class LiveList<T extends { id: string }> extends Emitter<LiveListEvents<T>> {
  private current: LiveListState<T>
  /** True while a load is under way; `loads` numbers them, so only the newest one lands. */
  private loading = false
  private loads = 0
  /** Events that arrived while a load was under way, applied after it. */
  private pending: WorkspaceEvent[] = []
  private readonly offs: Array<() => void> = []
  private closed = false

  constructor (private readonly feed: WorkspaceFeed, private readonly spec: ListSpec<T>) {
    super()
    this.current = { items: [], loaded: false, status: feed.status, revoked: feed.revoked, error: null }
    feed.retain()
    this.offs.push(
      feed.on('start', () => { this.reload() }),
      feed.on('event', (e) => { this.onEvent(e) }),
      feed.on('status', (status) => { this.update({ status }) }),
      feed.on('revoked', (revoked) => { this.update({ revoked }) }),
      feed.on('error', (error) => { this.update({ error }) })
    )
    // A feed already past `ready` (shared with an earlier list): load now.
    if (feed.lastEventId !== undefined) this.reload()
  }

  get state (): LiveListState<T> { return this.current }
  get items (): readonly T[] { return this.current.items }
  readonly subscribe = (listener: () => void): (() => void) => this.on('change', () => listener())
  readonly getSnapshot = (): LiveListState<T> => this.current

  /** Resolves once the list has loaded (at once if it has). */
  async ready (): Promise<void> {
    if (this.current.loaded) return
    await new Promise<void>((resolve) => {
      const off = this.on('change', (s) => { if (s.loaded || s.revoked !== null) { off(); resolve() } })
    })
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    for (const off of this.offs) off()
    this.feed.release()
    this.removeAllListeners()
  }

  private reload (): void {
    const token = ++this.loads
    this.pending = []
    this.loading = true
    void (async () => {
      try {
        const items = await this.spec.load()
        if (this.closed || token !== this.loads) return
        const queued = this.pending
        this.pending = []
        this.loading = false
        let list = items
        for (const e of queued) list = this.applyTo(list, e)
        this.update({ items: [...list].sort(this.spec.compare), loaded: true, error: null })
      } catch (error) {
        if (this.closed || token !== this.loads) return
        this.loading = false
        this.update({ error })
      }
    })()
  }

  private onEvent (e: WorkspaceEvent): void {
    if (this.loading) { this.pending.push(e); return }
    if (!this.current.loaded) return
    const items = this.applyTo(this.current.items, e)
    if (items !== this.current.items) this.update({ items })
  }

  private applyTo (items: readonly T[], e: WorkspaceEvent): T[] {
    const change = this.spec.classify(e)
    if (change === null) return items as T[]
    if ('remove' in change) {
      const left = items.filter((i) => i.id !== change.remove)
      return left.length === items.length ? items as T[] : left
    }
    const rest = items.filter((i) => i.id !== change.upsert.id)
    return [...rest, change.upsert].sort(this.spec.compare)
  }

  private update (patch: Partial<LiveListState<T>>): void {
    this.current = { ...this.current, ...patch }
    this.emit('change', this.current)
  }
}

const byCreated = (a: { createdAt: number, id: string }, b: { createdAt: number, id: string }): number =>
  a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

/** Projects of a workspace the reader can read, oldest first. */
export function projectsSpec (http: HttpClient, workspaceId: string): ListSpec<Project> {
  return {
    load: async () => await http.all('/workspaces/{id}/projects', { path: { id: workspaceId } }),
    classify: (e) => {
      if (e.kind === 'project.created' || e.kind === 'project.updated') return { upsert: e.data as unknown as Project }
      if (e.kind === 'project.deleted') return { remove: e.id }
      return null
    },
    compare: byCreated
  }
}

export type ResourceKind = 'documents' | 'diagrams' | 'tasks'
const entityOf: Record<ResourceKind, string> = { documents: 'document', diagrams: 'diagram', tasks: 'task' }

/** Documents (or diagrams, tasks) of a project the reader can read, oldest first. */
export function resourcesSpec (http: HttpClient, projectId: string, kind: ResourceKind = 'documents'): ListSpec<Resource> {
  const entity = entityOf[kind]
  return {
    load: async () => await http.all(`/projects/{id}/${kind}` as '/projects/{id}/documents', { path: { id: projectId } }),
    classify: (e) => {
      if (e.kind === 'project.deleted' && e.id === projectId) return null // the list owner drops the whole list
      if (e.projectId !== projectId) return null
      if (e.kind === `${entity}.created` || e.kind === `${entity}.updated`) return { upsert: e.data as unknown as Resource }
      if (e.kind === `${entity}.deleted`) return { remove: e.id }
      return null
    },
    compare: byCreated
  }
}

/** Conversations the reader owns or takes part in (of one project, if given), newest activity first. */
export function conversationsSpec (http: HttpClient, projectId?: string): ListSpec<ConversationItem> {
  const sortKey = (c: ConversationItem): number => c.lastMessageAt ?? 0
  return {
    load: async () => await http.all('/conversations', { query: projectId === undefined ? {} : { projectId } }),
    classify: (e) => {
      if (!e.kind.startsWith('conversation.')) return null
      if (projectId !== undefined && e.projectId !== projectId) return null
      if (e.kind === 'conversation.deleted') return { remove: e.id }
      return { upsert: e.data as unknown as ConversationItem }
    },
    compare: (a, b) => sortKey(b) - sortKey(a) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)
  }
}

/** What the watch functions need of a Tandem client. */
export interface LiveSource { readonly api: HttpClient }

const feeds = new WeakMap<HttpClient, Map<string, WorkspaceFeed>>()

/** The shared event stream of a workspace (one per client and workspace while lists use it). */
export function workspaceFeed (source: LiveSource, workspaceId: string): WorkspaceFeed {
  let byId = feeds.get(source.api)
  if (byId === undefined) { byId = new Map(); feeds.set(source.api, byId) }
  const existing = byId.get(workspaceId)
  if (existing !== undefined && existing.status !== 'closed') return existing
  const feed = new WorkspaceFeed(source.api, workspaceId)
  const map = byId
  feed.on('status', (s) => { if (s === 'closed' && map.get(workspaceId) === feed) map.delete(workspaceId) })
  map.set(workspaceId, feed)
  return feed
}

/** The projects of a workspace, live. */
export function watchProjects (source: LiveSource, workspaceId: string): LiveList<Project> {
  return new LiveList(workspaceFeed(source, workspaceId), projectsSpec(source.api, workspaceId))
}

/** The documents (or diagrams, tasks) of a project in a workspace, live. */
export function watchDocuments (source: LiveSource, workspaceId: string, projectId: string, kind: ResourceKind = 'documents'): LiveList<Resource> {
  return new LiveList(workspaceFeed(source, workspaceId), resourcesSpec(source.api, projectId, kind))
}

/** The reader's conversations in a workspace (of one project, if given), live. */
export function watchConversations (source: LiveSource, workspaceId: string, options: { projectId?: string } = {}): LiveList<ConversationItem> {
  return new LiveList(workspaceFeed(source, workspaceId), conversationsSpec(source.api, options.projectId))
}
