// The demo app's shell: who is signed in, and which screen the address asks
// for (`/verify-email?token=` from the verification email, `#/doc/{id}` for
// a document, anything else the home screen).

import type { JSX } from 'react'
import { StrictMode, useCallback, useEffect, useState } from 'react'
import { createRoot } from 'react-dom/client'
import { createTandem } from '@tandem/client'
import { TandemProvider } from '@tandem/react'
import { call, sessionToken, setSessionToken, type User } from './api'
import { endpoints } from './config'
import { AuthScreen, VerifyEmail } from './auth'
import { Home } from './home'
import { DocumentScreen } from './document'

function useHash (): string {
  const [hash, setHash] = useState(location.hash)
  useEffect(() => {
    const on = (): void => setHash(location.hash)
    window.addEventListener('hashchange', on)
    return () => window.removeEventListener('hashchange', on)
  }, [])
  return hash
}

function App (): JSX.Element {
  const [user, setUser] = useState<User | null>(null)
  const [loading, setLoading] = useState(sessionToken() !== null)
  const hash = useHash()

  const loadSession = useCallback(async () => {
    if (sessionToken() === null) { setUser(null); setLoading(false); return }
    try {
      const s = await call<{ user: User }>('GET', '/auth/session')
      setUser(s.user)
    } catch {
      setSessionToken(null)
      setUser(null)
    }
    setLoading(false)
  }, [])
  useEffect(() => { void loadSession() }, [loadSession])

  const signOut = async (): Promise<void> => {
    try { await call('POST', '/auth/logout') } catch { /* the session may be gone already */ }
    setSessionToken(null)
    setUser(null)
  }

  if (location.pathname === '/verify-email') return <VerifyEmail />
  if (loading) return <p className='muted'>Loading…</p>
  if (user === null) return <AuthScreen onSignedIn={(u) => setUser(u)} />
  const docId = /^#\/doc\/([\w-]+)/.exec(hash)?.[1]
  return (
    <>
      <header>
        <a href='#/' className='brand'>Tandem</a>
        <span className='who' data-testid='who'>{user.displayName}</span>
        <button className='link' onClick={() => { void signOut() }}>Sign out</button>
      </header>
      <main>
        {docId !== undefined ? <DocumentScreen key={docId} docId={docId} user={user} /> : <Home />}
      </main>
    </>
  )
}

// Live documents and conversations go through @tandem/client; the session
// token is read before every request and connection attempt.
const tandem = createTandem({ ...endpoints(), getSessionToken: sessionToken })

const root = document.getElementById('root')
if (root !== null) {
  createRoot(root).render(
    <StrictMode><TandemProvider client={tandem}><App /></TandemProvider></StrictMode>
  )
}
