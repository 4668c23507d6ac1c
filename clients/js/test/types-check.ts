// Compiled (not run) by `npm run typecheck`: the REST types come from the
// OpenAPI document, and misuse does not compile.
import { createTandem, TandemError, type Message, type ResponseOf, type ItemOf, type ConnectionStatus, type FileInfo, type TransferState } from '@tandem/client'
import { useTandemDocument, useConversation, useTransfer } from '@tandem/react'
import * as Y from 'yjs'
import { createSync, type SyncState } from '@tandem/client/sync'
import { useSync, useSyncStatus, useLiveQuery } from '@tandem/react/sync'

export async function usage (): Promise<void> {
  const tandem = createTandem({ controlUrl: 'http://127.0.0.1:8080', getSessionToken: () => 'token' })
  const session = await tandem.api.get('/auth/session')
  const workspaceId: string = session.workspaces[0]?.id ?? ''
  const project = await tandem.api.post('/workspaces/{id}/projects', { path: { id: workspaceId }, body: { name: 'P' } })
  const name: string = project.name
  // Lists are pages: `{ items, nextCursor }`, `?limit&cursor`.
  const page = await tandem.api.get('/workspaces/{id}/projects', { path: { id: workspaceId }, query: { limit: 10 } })
  const first: string | undefined = page.items[0]?.name
  const next: string | null = page.nextCursor
  if (next !== null) await tandem.api.get('/workspaces/{id}/projects', { path: { id: workspaceId }, query: { cursor: next } })
  const everyProject: Array<ItemOf<'/workspaces/{id}/projects'>> = await tandem.api.all('/workspaces/{id}/projects', { path: { id: workspaceId } })
  void [first, everyProject]
  // @ts-expect-error all() takes only paged lists
  await tandem.api.all('/auth/session')
  const token: ResponseOf<'/collaboration/token', 'post'> = await tandem.api.post('/collaboration/token', { body: { resourceType: 'doc', resourceId: 'd' } })
  const roomId: string = token.roomId
  const conn = tandem.connectDocument('doc', 'd', new Y.Doc(), { urlForm: 'y-partykit' })
  const status: ConnectionStatus = conn.status
  conn.on('revoked', (r) => { const why: string = r.reason; void why })
  const message: Message = await tandem.conversation('c').send('hi')
  const content: string = message.content
  void [name, roomId, status, content, useTandemDocument, useConversation, TandemError]

  // Files: typed metadata and transfers.
  const upload = tandem.files.upload(workspaceId, new Blob(['hello']), { name: 'hello.txt' })
  upload.on('progress', ({ loaded, total }) => { const ratio: number = loaded / total; void ratio })
  const file: FileInfo = await upload.settled()
  const sha: string = file.sha256
  const state: TransferState = upload.state
  await tandem.api.post('/conversations/{id}/messages', { path: { id: 'c' }, body: { content: 'see', attachments: [file.id] } })
  const { blob } = await tandem.files.download(file.id).settled()
  const view = useTransfer(upload)
  void [sha, state, blob, view.loaded]
  // @ts-expect-error an upload needs its workspace
  tandem.files.upload(new Blob(['x']))

  // @ts-expect-error not a path of the API
  await tandem.api.get('/no/such/path')
  // @ts-expect-error the path parameter is required
  await tandem.api.post('/workspaces/{id}/projects', { body: { name: 'P' } })
  // @ts-expect-error the body has the wrong field
  await tandem.api.post('/workspaces/{id}/projects', { path: { id: 'w' }, body: { title: 'P' } })
  // @ts-expect-error no such resource type
  tandem.connectDocument('spreadsheet', 'd', new Y.Doc())
  // @ts-expect-error answers are typed: a project has no `title`
  const wrong: string = project.title
  // @ts-expect-error a list answers a page, not an array
  page.map((p) => p.id)
  void wrong
}

// The sync engine: tables are typed by the app's row types; statuses and events are typed.
export function syncUsage (): void {
  interface Todo { id: string, title: string, done: boolean }
  const tandem = createTandem({ controlUrl: 'http://127.0.0.1:8080' })
  const sync = createSync<{ todos: Todo }>(tandem, { workspaceId: 'w', tables: { todos: 'id, done' }, autoStart: false })
  void sync.db.todos.put({ id: 'a', title: 't', done: false })
  // @ts-expect-error a row of another shape
  void sync.db.todos.put({ id: 'a', title: 1 })
  const state: SyncState = sync.status.state
  // @ts-expect-error not a state
  const wrong: SyncState = 'synced'
  sync.on('rejected', (list) => { const id: number = list[0]?.mutation.id ?? 0; void id })
  sync.on('change', (e) => { const ids: string[] = e.tables.todos ?? []; void ids })
  // @ts-expect-error an option that does not exist
  createSync(tandem, { workspaceId: 'w', tables: {}, pollMs: 5 })
  const view = (): void => {
    const { status } = useSync<{ todos: Todo }>('w', { tables: { todos: 'id' } })
    const todos: Todo[] | undefined = useLiveQuery(() => sync.db.todos.toArray(), [])
    void [status.pending, todos, useSyncStatus]
  }
  void [state, wrong, view]
}
