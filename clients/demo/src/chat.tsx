import type { JSX } from 'react'
// The document's conversation, live for every participant through
// @tandem/react's useConversation (the event stream, resumed with
// Last-Event-ID). "Stream a reply" plays the assistant: it posts a streaming
// message, appends a canned reply in chunks, then finishes it.

import { useState, type FormEvent } from 'react'
import { useConversation } from '@tandem/react'
import { call } from './api'
import { AnswerSets } from './answers'

const REPLY = 'Here is a streamed reply: every participant sees it grow, chunk by chunk, as it is written.'

export function ChatPanel ({ conversationId }: { conversationId: string }): JSX.Element {
  const { messages, closedReason, send, live } = useConversation(conversationId)
  const [text, setText] = useState('')

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
            <button data-testid='chat-stream' onClick={() => { void streamReply() }}>Stream a reply</button>
          </>
          )}
    </section>
  )
}
