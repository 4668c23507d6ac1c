// @tandem/react: React hooks over @tandem/client. The hooks create the
// client's objects (a DocumentConnection, a LiveConversation) for the
// component's lifetime and subscribe to them with useSyncExternalStore; the
// sockets and streams, their reconnects and revocation, stay in the client.
import { createContext, createElement, useCallback, useContext, useEffect, useMemo, useRef, useState, useSyncExternalStore, type ReactNode } from 'react'
import * as Y from 'yjs'
import type {
  ConnectDocumentOptions, ConnectionStatus, ConversationState, DocumentConnection, DocumentState,
  LiveConversation, Message, ResourceType, Revocation, SendMessageBody, Tandem,
  Transfer, TransferState
} from '@tandem/client'

/** The context TandemProvider fills (also read by `@tandem/react/sync`). */
export const TandemContext = createContext<Tandem | null>(null)

/** Makes a Tandem client (from `createTandem`) available to the hooks below. */
export function TandemProvider ({ client, children }: { client: Tandem, children?: ReactNode }): ReactNode {
  return createElement(TandemContext.Provider, { value: client }, children)
}

/** The client given to the nearest TandemProvider. */
export function useTandem (): Tandem {
  const client = useContext(TandemContext)
  if (client === null) throw new Error('useTandem: wrap the app in <TandemProvider client={createTandem(...)}>')
  return client
}

/** The explicit client, else the TandemProvider's (for hooks in other modules). */
export function useClient (explicit: Tandem | undefined): Tandem {
  const fromContext = useContext(TandemContext)
  const client = explicit ?? fromContext
  if (client === null) throw new Error('no Tandem client: pass `client` or wrap the app in <TandemProvider>')
  return client
}

export interface UseTandemDocumentOptions extends ConnectDocumentOptions {
  /** The client (default: the TandemProvider's). */
  client?: Tandem
  /** A Y.Doc to bind (default: a new one per resource). */
  doc?: Y.Doc
}

export interface TandemDocument {
  /** The document: bind your editor to it. */
  yDoc: Y.Doc
  /** The live connection (awareness, events, `reconnect()`); null before the first effect and when no resource is given. */
  provider: DocumentConnection | null
  status: ConnectionStatus
  isConnected: boolean
  /** True until the relay's state has arrived once (stays false after that, through reconnects). */
  isLoading: boolean
  /** Set once access is revoked: the connection has stopped for good. */
  revoked: Revocation | null
  error: unknown
}

const idleDocument: DocumentState = { status: 'disconnected', synced: false, revoked: null, error: null, tokenRequests: 0, ticketAttempts: 0 }
const noop = (): (() => void) => () => {}

/**
 * Keeps a Yjs document live for a resource (the plans' `useYjsProvider`). Pass a null `resourceId`
 * to connect nothing. The connection is destroyed on unmount or when the resource changes.
 */
export function useTandemDocument (resourceType: ResourceType, resourceId: string | null | undefined, options: UseTandemDocumentOptions = {}): TandemDocument {
  const client = useClient(options.client)
  const { client: _client, doc: givenDoc, ...connectOptions } = options
  const yDoc = useMemo(() => givenDoc ?? new Y.Doc(), [givenDoc, resourceType, resourceId])
  const [connection, setConnection] = useState<DocumentConnection | null>(null)
  const [everSynced, setEverSynced] = useState(false)

  // Options are read when the connection is made; changing them later does not reconnect.
  const optionsRef = useRef(connectOptions)
  optionsRef.current = connectOptions

  useEffect(() => {
    if (!resourceId) return
    setEverSynced(false)
    const conn = client.connectDocument(resourceType, resourceId, yDoc, optionsRef.current)
    const off = conn.on('synced', (synced) => { if (synced) setEverSynced(true) })
    setConnection(conn)
    return () => {
      off()
      conn.destroy()
      setConnection((c) => (c === conn ? null : c))
    }
  }, [client, resourceType, resourceId, yDoc, optionsRef])

  const state = useSyncExternalStore(connection?.subscribe ?? noop, connection?.getSnapshot ?? (() => idleDocument), connection?.getSnapshot ?? (() => idleDocument))
  return {
    yDoc,
    provider: connection,
    status: state.status,
    isConnected: state.status === 'connected',
    isLoading: resourceId ? !(everSynced || state.synced) && state.status !== 'revoked' && state.status !== 'failed' : false,
    revoked: state.revoked,
    error: state.error
  }
}

export interface UseConversationOptions {
  client?: Tandem
}

export interface ConversationView extends ConversationState {
  /** Sends a message as the signed-in user; it shows up in `messages` through the stream. */
  send: (content: string, extra?: Omit<SendMessageBody, 'content'>) => Promise<Message>
  /** The live conversation (events, `lastEventId`); null before the first effect. */
  live: LiveConversation | null
}

const idleConversation: ConversationState = { conversation: null, messages: [], olderMessages: false, status: 'connecting', closedReason: null, loaded: false, outOfSync: false }

/** A conversation's messages, live: new messages and streamed replies appear as they are written. */
export function useConversation (conversationId: string | null | undefined, options: UseConversationOptions = {}): ConversationView {
  const client = useClient(options.client)
  const [live, setLive] = useState<LiveConversation | null>(null)

  useEffect(() => {
    if (!conversationId) return
    const conversation = client.conversation(conversationId)
    setLive(conversation)
    return () => {
      conversation.close()
      setLive((c) => (c === conversation ? null : c))
    }
  }, [client, conversationId])

  const state = useSyncExternalStore(live?.subscribe ?? noop, live?.getSnapshot ?? (() => idleConversation), live?.getSnapshot ?? (() => idleConversation))
  const send = useCallback(async (content: string, extra?: Omit<SendMessageBody, 'content'>): Promise<Message> => {
    if (!conversationId) throw new Error('useConversation: no conversation')
    return await client.api.post('/conversations/{id}/messages', { path: { id: conversationId }, body: { ...extra, content } })
  }, [client, conversationId])
  return { ...state, send, live }
}
export { useProjects, useDocuments, useConversations, type UseLiveListOptions } from './live.js'

export interface TransferView {
  state: TransferState | null
  /** Bytes done (sent or received, never decreasing) and the total. */
  loaded: number
  total: number
  error: unknown
}

const noTransfer: TransferView = { state: null, loaded: 0, total: 0, error: null }

/** A file transfer's state and progress (from `tandem.files.upload()`/`download()`), re-rendered as it moves. */
export function useTransfer (transfer: Transfer<unknown> | null | undefined): TransferView {
  const [view, setView] = useState<TransferView>(noTransfer)
  useEffect(() => {
    if (!transfer) { setView(noTransfer); return }
    const read = (): void => setView({ state: transfer.state, loaded: transfer.loaded, total: transfer.total, error: transfer.error })
    read()
    const offProgress = transfer.on('progress', read)
    const offState = transfer.on('state', read)
    return () => { offProgress(); offState() }
  }, [transfer])
  return view
}
