import type { JSX } from 'react'
// Several models' answers side by side (plan 004's message sets): "Ask two
// models" posts the question as a user set and starts an ai set with two
// streaming answers, written at the same time; every participant sees both
// grow and which one is selected, and can select the other. The sets are
// re-read (at most every 100 ms) when the conversation's event stream moves.

import { useEffect, useState } from 'react'
import type { LiveConversation } from '@tandem/client'
import { call } from './api'

interface SetMessage { id: string, content: string, model: string | null, blockType: string, selected: boolean, state: string }
interface MessageSet { id: string, type: 'user' | 'ai', selectedBlockType: string, messages: SetMessage[] }

const MODELS: Array<[string, string]> = [
  ['model-a', 'Model A answers: sets keep every candidate, and the selection is shared by everyone.'],
  ['model-b', 'Model B answers differently: pick the answer you prefer, the others stay available.']
]

export function AnswerSets ({ conversationId, live }: { conversationId: string, live: LiveConversation | null }): JSX.Element | null {
  const [sets, setSets] = useState<MessageSet[]>([])
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined
    const load = (): void => {
      call<{ items: MessageSet[] }>('GET', `/conversations/${conversationId}/sets?limit=200`)
        .then((p) => setSets(p.items)).catch(() => setSets([]))
    }
    load()
    const off = live?.on('event', () => {
      if (timer === undefined) timer = setTimeout(() => { timer = undefined; load() }, 100)
    })
    return () => { off?.(); clearTimeout(timer) }
  }, [conversationId, live])

  const base = `/conversations/${conversationId}`
  const ask = async (): Promise<void> => {
    const q = await call<{ id: string }>('POST', `${base}/sets`, { type: 'user' })
    await call('POST', `${base}/sets/${q.id}/messages`, { content: 'Which answer do you prefer?' })
    const ai = await call<{ id: string }>('POST', `${base}/sets`, { type: 'ai' })
    const answers = await Promise.all(MODELS.map(async ([model]) =>
      await call<{ id: string }>('POST', `${base}/sets/${ai.id}/messages`, { state: 'streaming', model, blockType: model })))
    await Promise.all(answers.map(async (m, i) => {
      for (const piece of MODELS[i]?.[1].match(/.{1,10}/g) ?? []) {
        await call('POST', `${base}/messages/${m.id}/chunks`, { delta: piece })
        await new Promise((resolve) => setTimeout(resolve, 40))
      }
      await call('POST', `${base}/messages/${m.id}/finish`, {})
    }))
  }
  const select = async (id: string): Promise<void> => { await call('POST', `${base}/messages/${id}/select`) }

  const multi = sets.filter((s) => s.type === 'ai' && s.messages.length > 1)
  return (
    <div className='answers' data-testid='answer-sets'>
      {multi.map((s) => (
        <div key={s.id} className='answer-set' data-testid='answer-set'>
          {s.messages.map((m) => (
            <div key={m.id} className={`answer ${m.selected ? 'selected' : ''}`} data-testid='answer' data-selected={m.selected}>
              <b>{m.model ?? m.blockType}</b>
              <span>{m.content}{m.state === 'streaming' && <i className='cursor'>▍</i>}</span>
              {m.selected
                ? <em className='muted'>selected</em>
                : <button className='link' data-testid='answer-select' onClick={() => { void select(m.id) }}>Select</button>}
            </div>
          ))}
        </div>
      ))}
      <button data-testid='ask-two-models' onClick={() => { void ask() }}>Ask two models</button>
    </div>
  )
}
