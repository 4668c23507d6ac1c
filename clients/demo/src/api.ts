// A thin fetch wrapper over control's REST API: the session token as the
// bearer credential, JSON in and out, the error envelope turned into ApiError.

import { endpoints } from './config'

export class ApiError extends Error {
  constructor (readonly status: number, readonly code: string, message: string) {
    super(message)
  }
}

export interface User { id: string, email: string, displayName: string }
export interface Workspace { id: string, name: string, type: string, role: string }
export interface Project { id: string, workspaceId: string, name: string, role: string }
export interface DocumentInfo { id: string, projectId: string, title: string, role: string }
export interface Member { userId: string, email: string, displayName: string, role: string }
export interface Message {
  id: string
  role: string
  content: string
  state: string
  userId: string
  senderUser?: { displayName: string }
}

const SESSION = 'tandem.session'

export function sessionToken (): string | null {
  return localStorage.getItem(SESSION)
}

export function setSessionToken (token: string | null): void {
  if (token === null) localStorage.removeItem(SESSION)
  else localStorage.setItem(SESSION, token)
}

export async function call<T> (method: string, path: string, body?: unknown): Promise<T> {
  const token = sessionToken()
  const headers: Record<string, string> = {}
  if (token !== null) headers.authorization = `Bearer ${token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(endpoints().controlUrl + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const text = await res.text()
  if (!res.ok) {
    let code = 'http_error'
    let message = `HTTP ${res.status}`
    try {
      const env = JSON.parse(text) as { error?: { code?: string, message?: string } }
      code = env.error?.code ?? code
      message = env.error?.message ?? message
    } catch { /* not the envelope */ }
    throw new ApiError(res.status, code, message)
  }
  return (text === '' ? null : JSON.parse(text)) as T
}

/** Every item of a paged list (`{items, nextCursor}`), following `nextCursor` to the end. */
export async function listAll<T> (path: string): Promise<T[]> {
  const items: T[] = []
  let cursor: string | null = null
  do {
    const sep = path.includes('?') ? '&' : '?'
    const query: string = cursor === null ? `${sep}limit=200` : `${sep}limit=200&cursor=${encodeURIComponent(cursor)}`
    const page: { items: T[], nextCursor: string | null } = await call('GET', path + query)
    items.push(...page.items)
    cursor = page.nextCursor
  } while (cursor !== null)
  return items
}
