// Sharing a document (owners): grant someone a role by email, list the
// grants, revoke one. Grantees also become participants of the document's
// conversation, and stop being one when revoked.

import type { JSX } from 'react'
import { useEffect, useState, type FormEvent } from 'react'
import { ApiError, call, listAll, type Member } from './api'

export function SharePanel ({ docId, conversationId, selfId }: {
  docId: string
  conversationId: string | null
  selfId: string
}): JSX.Element {
  const [members, setMembers] = useState<Member[]>([])
  const [email, setEmail] = useState('')
  const [role, setRole] = useState('editor')
  const [error, setError] = useState('')

  const load = (): void => {
    listAll<Member>(`/documents/${docId}/members`).then(setMembers).catch(() => {})
  }
  useEffect(load, [docId])

  const share = async (e: FormEvent): Promise<void> => {
    e.preventDefault()
    setError('')
    try {
      const m = await call<Member>('POST', `/documents/${docId}/members`, { email: email.trim(), role })
      if (conversationId !== null) {
        await call('POST', `/conversations/${conversationId}/participants`, { userId: m.userId })
          .catch((err: unknown) => { if (!(err instanceof ApiError && err.status === 409)) throw err })
      }
      setEmail('')
      load()
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err))
    }
  }

  const revoke = async (m: Member): Promise<void> => {
    setError('')
    try {
      await call('DELETE', `/documents/${docId}/members/${m.userId}`)
      if (conversationId !== null) {
        await call('DELETE', `/conversations/${conversationId}/participants/${m.userId}`).catch(() => {})
      }
      load()
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err))
    }
  }

  return (
    <section className='card share' data-testid='share'>
      <h3>Share</h3>
      <form className='inline' onSubmit={(e) => { void share(e) }}>
        <input type='email' placeholder='Email' value={email} data-testid='share-email'
          onChange={(e) => setEmail(e.target.value)} required />
        <select value={role} data-testid='share-role' onChange={(e) => setRole(e.target.value)}>
          <option value='editor'>editor</option>
          <option value='viewer'>viewer</option>
          <option value='owner'>owner</option>
        </select>
        <button type='submit' data-testid='share-submit'>Share</button>
      </form>
      {error !== '' && <p className='error' role='alert'>{error}</p>}
      <ul className='members'>
        {members.map((m) => (
          <li key={m.userId} data-testid='member'>
            <span>{m.displayName} <span className='muted'>{m.email}</span> <span className='role'>{m.role}</span></span>
            {m.userId !== selfId && (
              <button className='link' data-testid={`revoke-${m.email}`} onClick={() => { void revoke(m) }}>Revoke</button>
            )}
          </li>
        ))}
      </ul>
    </section>
  )
}
