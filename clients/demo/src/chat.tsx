// The document's conversation: messages and streamed replies, live for every
// participant through the event stream. "Stream a reply" plays the assistant:
// it posts a streaming message, appends a canned reply in chunks, finishes it.

import type { JSX } from 'react'
import { useEffect, useState, type FormEvent } from 'react'
import { call, type Message } from './api'
import { streamEvents } from './sse'

const REPLY = 'Here is a streamed reply: every participant sees it grow, chunk by chunk, as it is written.'

interface Payload { data: unknown }

export function ChatPanel ({ conversationId }: { conversationId: string }): JSX.Element {
  const [messages, setMessages] = useState<Message[]>([])
  const [text, setText] = useState('')
  const [closed, setClosed] = useState('')

  useEffect(() => {
    setMessages([])
    return streamEvents(conversationId, (e) => {
      if (e.event === 'closed') { setClosed((e.data as { reason?: string }).reason ?? 'closed'); return }
      const data = (e.data as Payload).data
      if (e.event === 'snapshot') {
        setMessages((data as { messages: Message[] }).messages)
      } else if (e.event === 'message') {
        const m = data as Message
        setMessages((list) => [...list.filter((x) => x.id !== m.id), m])
      } else if (e.event === 'chunk') {
        const c = data as { messageId: string, delta: string }
        setMessages((list) => list.map((m) => m.id === c.messageId ? { ...m, content: m.content + c.delta } : m))
      } else if (e.event === 'message_finished') {
        const f = data as { messageId: string, state: string }
        setMessages((list) => list.map((m) => m.id === f.messageId ? { ...m, state: f.state } : m))
      }
    })
  }, [conversationId])

  const send = async (e: FormEvent): Promise<void> => {
    e.preventDefault()
    if (text.trim() === '') return
    const content = text.trim()
    setText('')
    await call('POST', `/conversations/${conversationId}/messages`, { content })
  }

  const streamReply = async (): Promise<void> => {
    const base = `/conversations/${conversationId}/messages`
    const m = await call<Message>('POST', base, { role: 'assistant', state: 'streaming', content: '' })
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
      {closed !== ''
        ? <p className='muted'>This conversation is closed for you ({closed}).</p>
        : (
          <>
            <form className='inline' onSubmit={(e) => { void send(e) }}>
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
