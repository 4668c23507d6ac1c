import type { JSX } from 'react'
// The document's conversation, live for every participant through
// @tandem/react's useConversation (the event stream, resumed with
// Last-Event-ID). "Stream a reply" plays the assistant: it posts a streaming
// message, appends a canned reply in chunks, then finishes it. "Attach"
// uploads files through tandem.files (hashed, deduplicated, with a progress
// bar) into the project's workspace and sends them as a message's
// attachments; an attachment's link downloads it through the client, which
// checks its sha256 before saving it.

import { useEffect, useRef, useState, type FormEvent } from 'react'
import { useConversation, useTandem, useTransfer } from '@tandem/react'
import type { DownloadTransfer, Message, UploadTransfer } from '@tandem/client'
import { call } from './api'
import { AnswerSets } from './answers'

type AttachmentOf = Message['attachments'][number]

function formatSize (n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`
  return `${(n / 1024 / 1024).toFixed(1)} MB`
}

function TransferBar ({ transfer, testid }: { transfer: UploadTransfer | DownloadTransfer, testid: string }): JSX.Element {
  const { state, loaded, total } = useTransfer(transfer)
  return (
    <span className={`transfer ${state ?? ''}`} data-testid={testid} data-state={state ?? ''}>
      <progress value={loaded} max={Math.max(total, 1)} data-testid={`${testid}-bar`} />
      <small>{state === 'done' ? 'done' : state === 'failed' ? `failed: ${String((transfer.error as Error | null)?.message ?? '')}` : `${formatSize(loaded)} / ${formatSize(total)}`}</small>
    </span>
  )
}

function AttachmentLink ({ attachment }: { attachment: AttachmentOf }): JSX.Element {
  const tandem = useTandem()
  const [download, setDownload] = useState<DownloadTransfer | null>(null)
  const [saved, setSaved] = useState<string | null>(null)
  const fileId = attachment.fileId ?? null
  const start = (): void => {
    if (fileId === null) return
    const t = tandem.files.download(fileId)
    setDownload(t)
    setSaved(null)
    t.settled().then(({ blob, file }) => {
      const url = URL.createObjectURL(blob)
      const a = document.createElement('a')
      a.href = url
      a.download = file.name
      document.body.appendChild(a)
      a.click()
      a.remove()
      setTimeout(() => URL.revokeObjectURL(url), 60_000)
      setSaved(file.sha256)
    }).catch(() => { /* shown by the bar */ })
  }
  return (
    <span className='attachment' data-testid='attachment'>
      <a href='#' data-testid='attachment-link' onClick={(e) => { e.preventDefault(); start() }}>{attachment.name}</a>
      <small> ({formatSize(attachment.sizeBytes)})</small>
      {download !== null && <TransferBar transfer={download} testid='download' />}
      {saved !== null && <small className='verified' data-testid='download-verified' title={saved}> sha256 checked</small>}
    </span>
  )
}

const REPLY = 'Here is a streamed reply: every participant sees it grow, chunk by chunk, as it is written.'

export function ChatPanel ({ conversationId }: { conversationId: string }): JSX.Element {
  const { messages, closedReason, send, live, conversation } = useConversation(conversationId)
  const tandem = useTandem()
  const [text, setText] = useState('')
  const [workspaceId, setWorkspaceId] = useState<string | null>(null)
  const [uploads, setUploads] = useState<UploadTransfer[]>([])
  const fileInput = useRef<HTMLInputElement>(null)

  // Files go into the workspace of the conversation's project (if this user may see the project).
  const projectId = conversation?.projectId ?? null
  useEffect(() => {
    if (projectId === null) return
    call<{ workspaceId: string }>('GET', `/projects/${projectId}`)
      .then((p) => setWorkspaceId(p.workspaceId))
      .catch(() => setWorkspaceId(null))
  }, [projectId])

  const attach = (files: FileList | null): void => {
    if (workspaceId === null || files === null) return
    for (const f of [...files]) {
      const t = tandem.files.upload(workspaceId, f)
      setUploads((list) => [...list, t])
      t.settled()
        .then(async (file) => await send(`Attached ${file.name}`, { attachments: [file.id] }))
        .then(() => setTimeout(() => setUploads((list) => list.filter((x) => x !== t)), 1500))
        .catch(() => { /* the bar says it failed */ })
    }
    if (fileInput.current !== null) fileInput.current.value = ''
  }

  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault()
    if (text.trim() === '') return
    const content = text.trim()
    setText('')
    await send(content)
  }

  const streamReply = async (): Promise<void> => {
    const base = `/conversations/${conversationId}/messages`
    const m = await call<{ id: string }>('POST', base, { role: 'assistant', state: 'streaming', content: '' })
    for (const piece of REPLY.match(/.{1,12}/g) ?? []) {
      await call('POST', `${base}/${m.id}/chunks`, { delta: piece })
      await new Promise((resolve) => setTimeout(resolve, 60))
    }
    await call('POST', `${base}/${m.id}/finish`, {})
  }

  return (
    <section className='card chat' data-testid='chat'>
      <h3>Conversation</h3>
      <ol className='messages' data-testid='messages'>
        {messages.map((m) => (
          <li key={m.id} className={`message ${m.role} ${m.state}`} data-testid='message'>
            <b>{m.role === 'assistant' ? 'Assistant' : (m.senderUser?.displayName ?? 'someone')}</b>
            <span>{m.content}{m.state === 'streaming' && <i className='cursor'>▍</i>}</span>
            {m.attachments.length > 0 && (
              <span className='attachments'>
                {m.attachments.map((a, i) => <AttachmentLink key={a.fileId ?? i} attachment={a} />)}
              </span>
            )}
          </li>
        ))}
      </ol>
      {closedReason === null && <AnswerSets conversationId={conversationId} live={live} />}
      {closedReason !== null
        ? <p className='muted'>This conversation is closed for you ({closedReason}).</p>
        : (
          <>
            <form className='inline' onSubmit={(e) => { void submit(e) }}>
              <input placeholder='Write a message' value={text} data-testid='chat-input'
                onChange={(e) => setText(e.target.value)} />
              <button type='submit' data-testid='chat-send'>Send</button>
            </form>
            <div className='chat-actions'>
              <button data-testid='chat-stream' onClick={() => { void streamReply() }}>Stream a reply</button>
              {workspaceId !== null && (
                <>
                  <button data-testid='attach' onClick={() => fileInput.current?.click()}>Attach a file</button>
                  <input type='file' multiple hidden ref={fileInput} data-testid='attach-input' onChange={(e) => attach(e.target.files)} />
                </>
              )}
            </div>
            {uploads.map((t, i) => (
              <div key={i} className='upload' data-testid='upload'>
                <span>{t.name}</span> <TransferBar transfer={t} testid='upload-progress' />
              </div>
            ))}
          </>
          )}
    </section>
  )
}
