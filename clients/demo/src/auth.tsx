// Sign up / sign in, and the page the verification email links to.

import type { JSX } from 'react'
import { useEffect, useState, type FormEvent } from 'react'
import { call, setSessionToken, type User } from './api'

export function AuthScreen ({ onSignedIn }: { onSignedIn: (u: User) => void }): JSX.Element {
  const [mode, setMode] = useState<'login' | 'signup'>('login')
  const [email, setEmail] = useState('')
  const [password, setPassword] = useState('')
  const [displayName, setDisplayName] = useState('')
  const [error, setError] = useState('')

  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault()
    setError('')
    try {
      const body = mode === 'signup' ? { email, password, displayName } : { email, password }
      const r = await call<{ user: User, sessionToken: string }>('POST', `/auth/${mode}`, body)
      setSessionToken(r.sessionToken)
      onSignedIn(r.user)
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err))
    }
  }

  return (
    <form className='card auth' onSubmit={(e) => { void submit(e) }}>
      <h1>Tandem</h1>
      <p className='muted'>{mode === 'login' ? 'Sign in to your workspace' : 'Create an account'}</p>
      {mode === 'signup' && (
        <input name='displayName' placeholder='Your name' value={displayName}
          onChange={(e) => setDisplayName(e.target.value)} required />
      )}
      <input name='email' type='email' placeholder='Email' value={email}
        onChange={(e) => setEmail(e.target.value)} required />
      <input name='password' type='password' placeholder='Password (8+ characters)' value={password}
        onChange={(e) => setPassword(e.target.value)} required minLength={8} />
      {error !== '' && <p className='error' role='alert'>{error}</p>}
      <button type='submit' data-testid='auth-submit'>{mode === 'login' ? 'Sign in' : 'Sign up'}</button>
      <button type='button' className='link' data-testid='auth-switch'
        onClick={() => setMode(mode === 'login' ? 'signup' : 'login')}>
        {mode === 'login' ? 'New here? Create an account' : 'Have an account? Sign in'}
      </button>
    </form>
  )
}

export function VerifyEmail (): JSX.Element {
  const [state, setState] = useState<'working' | 'done' | 'failed'>('working')
  const [message, setMessage] = useState('')
  useEffect(() => {
    const token = new URLSearchParams(location.search).get('token') ?? ''
    call('POST', '/auth/verify-email', { token })
      .then(() => setState('done'))
      .catch((err: unknown) => { setState('failed'); setMessage(err instanceof Error ? err.message : String(err)) })
  }, [])
  return (
    <div className='card auth' data-testid='verify-email'>
      <h1>Email verification</h1>
      {state === 'working' && <p>Verifying…</p>}
      {state === 'done' && <p>Your email address is verified. <a href='/'>Continue</a></p>}
      {state === 'failed' && <p className='error'>This link did not work: {message}</p>}
    </div>
  )
}
