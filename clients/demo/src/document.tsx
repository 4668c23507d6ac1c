// One document: the collaborative editor (CodeMirror 6 bound to the Y.Doc,
// other users' cursors and names from awareness), who is here, sharing by
// email (owners), and the document's conversation. When access is revoked,
// the page says so and the editor turns read-only.

import type { JSX } from 'react'
import { useEffect, useRef, useState } from 'react'
import * as Y from 'yjs'
import { EditorView, basicSetup } from 'codemirror'
import { Compartment, EditorState } from '@codemirror/state'
import { yCollab } from 'y-codemirror.next'
import { call, type DocumentInfo, type User } from './api'
import { connectDocument, type Connection, type Status } from './collab'
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
  const [status, setStatus] = useState<Status>('connecting')
  const [revoked, setRevoked] = useState('')
  const [peers, setPeers] = useState<Peer[]>([])
  const [conversationId, setConversationId] = useState<string | null>(null)
  const [synced, setSynced] = useState(false)
  const editorRef = useRef<HTMLDivElement>(null)
  const [doc] = useState(() => new Y.Doc())
  const [conn, setConn] = useState<Connection | null>(null)

  useEffect(() => {
    call<DocumentInfo>('GET', `/documents/${docId}`).then(setInfo).catch(() => setMissing(true))
  }, [docId])

  // The connection and the editor live as long as the screen.
  useEffect(() => {
    if (info === null || editorRef.current === null) return
    const c = connectDocument(docId, doc, (s, reason) => {
      setStatus(s)
      if (s === 'revoked') setRevoked(reason ?? 'access revoked')
    })
    const awareness = c.provider.awareness
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
    c.provider.on('sync', (s: boolean) => { if (s) setSynced(true) })

    const meta = doc.getMap<string>('meta')
    const onMeta = (): void => setConversationId(meta.get('conversationId') ?? null)
    meta.observe(onMeta)
    onMeta()

    const ytext = doc.getText('content')
    const editable = new Compartment()
    const view = new EditorView({
      parent: editorRef.current,
      state: EditorState.create({
        doc: ytext.toString(),
        extensions: [
          basicSetup,
          EditorView.lineWrapping,
          editable.of(EditorState.readOnly.of(info.role === 'viewer')),
          yCollab(ytext, awareness, { undoManager: new Y.UndoManager(ytext) })
        ]
      })
    })
    setConn(c)
    return () => {
      meta.unobserve(onMeta)
      view.destroy()
      c.destroy()
      setConn(null)
    }
  }, [info, docId, doc, user])

  // The document's conversation: its id is kept in the Y.Doc; the owner makes one.
  useEffect(() => {
    if (!synced || conversationId !== null || info?.role !== 'owner' || revoked !== '') return
    call<{ id: string }>('POST', `/projects/${info.projectId}/conversations`, { title: info.title })
      .then((c) => { if (doc.getMap('meta').get('conversationId') === undefined) doc.getMap('meta').set('conversationId', c.id) })
      .catch(() => {})
  }, [synced, conversationId, info, doc, revoked])

  useEffect(() => {
    if (revoked !== '') editorRef.current?.querySelector('.cm-content')?.setAttribute('contenteditable', 'false')
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
        {revoked !== '' && (
          <div className='banner' role='alert' data-testid='revoked'>
            Your access to this document was revoked. ({revoked})
          </div>
        )}
        <div className='peers' data-testid='peers'>
          {peers.map((p) => <span key={p.clientId} className='peer' style={{ background: p.color }}>{p.name}</span>)}
        </div>
        <div className='editor' ref={editorRef} data-testid='editor' />
      </div>
      <aside>
        {info?.role === 'owner' && conn !== null && (
          <SharePanel docId={docId} conversationId={conversationId} selfId={user.id} />
        )}
        {conversationId !== null && revoked === '' && <ChatPanel conversationId={conversationId} />}
        {conversationId === null && <p className='muted'>The conversation appears once the owner has opened the document.</p>}
      </aside>
    </div>
  )
}
