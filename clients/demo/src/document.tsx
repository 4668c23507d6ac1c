import type { JSX } from 'react'
// One document: the collaborative editor (CodeMirror 6 bound to the Y.Doc,
// other users' cursors and names from awareness), who is here, sharing by
// email (owners), and the document's conversation. The connection is
// @tandem/react's useTandemDocument (a token per attempt, backoff, final
// revocation); when access is revoked the page says so and the editor turns
// read-only.

import { useEffect, useRef, useState } from 'react'
import * as Y from 'yjs'
import { EditorView, basicSetup } from 'codemirror'
import { EditorState } from '@codemirror/state'
import { yCollab } from 'y-codemirror.next'
import { useTandemDocument } from '@tandem/react'
import { call, type DocumentInfo, type User } from './api'
import { SharePanel } from './share'
import { ChatPanel } from './chat'

const COLORS = ['#e8590c', '#1971c2', '#2f9e44', '#9c36b5', '#c2255c', '#0c8599', '#f08c00']

function colorOf (id: string): string {
  let h = 0
  for (const ch of id) h = (h * 31 + ch.charCodeAt(0)) >>> 0
  return COLORS[h % COLORS.length] ?? '#1971c2'
}

interface Peer { clientId: number, name: string, color: string }

export function DocumentScreen ({ docId, user }: { docId: string, user: User }): JSX.Element {
  const [info, setInfo] = useState<DocumentInfo | null>(null)
  const [missing, setMissing] = useState(false)
  const [peers, setPeers] = useState<Peer[]>([])
  const [conversationId, setConversationId] = useState<string | null>(null)
  const editorRef = useRef<HTMLDivElement>(null)
  const { yDoc: doc, provider, status, isLoading, revoked } = useTandemDocument('doc', info === null ? null : docId)

  useEffect(() => {
    call<DocumentInfo>('GET', `/documents/${docId}`).then(setInfo).catch(() => setMissing(true))
  }, [docId])

  // The editor, bound to the document and the connection's awareness.
  useEffect(() => {
    if (info === null || provider === null || editorRef.current === null) return
    const awareness = provider.awareness
    awareness.setLocalStateField('user', { name: user.displayName, color: colorOf(user.id), colorLight: colorOf(user.id) + '33' })
    const updatePeers = (): void => {
      const list: Peer[] = []
      awareness.getStates().forEach((state, clientId) => {
        const u = (state as { user?: { name?: string, color?: string } }).user
        if (clientId !== doc.clientID && u?.name !== undefined) list.push({ clientId, name: u.name, color: u.color ?? '#888' })
      })
      setPeers(list)
    }
    awareness.on('change', updatePeers)
    const meta = doc.getMap<string>('meta')
    const onMeta = (): void => setConversationId(meta.get('conversationId') ?? null)
    meta.observe(onMeta)
    onMeta()
    const ytext = doc.getText('content')
    const view = new EditorView({
      parent: editorRef.current,
      state: EditorState.create({
        doc: ytext.toString(),
        extensions: [
          basicSetup,
          EditorView.lineWrapping,
          EditorState.readOnly.of(info.role === 'viewer'),
          yCollab(ytext, awareness, { undoManager: new Y.UndoManager(ytext) })
        ]
      })
    })
    return () => {
      awareness.off('change', updatePeers)
      meta.unobserve(onMeta)
      view.destroy()
    }
  }, [info, provider, doc, user])

  // A dead network may leave the socket open for a long time: drop it when the
  // browser goes offline, reconnect (with a fresh token) when it is back.
  useEffect(() => {
    if (provider === null) return
    const offline = (): void => { if (provider.status !== 'revoked') provider.disconnect() }
    const online = (): void => { if (provider.status === 'disconnected') provider.reconnect() }
    window.addEventListener('offline', offline)
    window.addEventListener('online', online)
    return () => { window.removeEventListener('offline', offline); window.removeEventListener('online', online) }
  }, [provider])

  // The document's conversation: its id is kept in the Y.Doc; the owner makes one.
  useEffect(() => {
    if (isLoading || conversationId !== null || info?.role !== 'owner' || revoked !== null) return
    call<{ id: string }>('POST', `/projects/${info.projectId}/conversations`, { title: info.title })
      .then((c) => { if (doc.getMap('meta').get('conversationId') === undefined) doc.getMap('meta').set('conversationId', c.id) })
      .catch(() => {})
  }, [isLoading, conversationId, info, doc, revoked])

  useEffect(() => {
    if (revoked !== null) editorRef.current?.querySelector('.cm-content')?.setAttribute('contenteditable', 'false')
  }, [revoked])

  if (missing) return <p className='error' data-testid='missing'>This document does not exist, or you have no access to it.</p>
  return (
    <div className='document'>
      <div className='editor-column'>
        <div className='doc-head'>
          <h2>{info?.title ?? '…'}</h2>
          <span className={`status ${status}`} data-testid='status'>{status}</span>
          {info !== null && <span className='role'>{info.role}</span>}
        </div>
        {revoked !== null && (
          <div className='banner' role='alert' data-testid='revoked'>
            Your access to this document was revoked. ({revoked.reason})
          </div>
        )}
        <div className='peers' data-testid='peers'>
          {peers.map((p) => <span key={p.clientId} className='peer' style={{ background: p.color }}>{p.name}</span>)}
        </div>
        <div className='editor' ref={editorRef} data-testid='editor' />
      </div>
      <aside>
        {info?.role === 'owner' && provider !== null && (
          <SharePanel docId={docId} conversationId={conversationId} selfId={user.id} />
        )}
        {conversationId !== null && revoked === null && <ChatPanel conversationId={conversationId} />}
        {conversationId === null && <p className='muted'>The conversation appears once the owner has opened the document.</p>}
      </aside>
    </div>
  )
}
