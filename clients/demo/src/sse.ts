// A conversation's event stream over fetch (EventSource cannot send the
// Authorization header): parses server-sent events, resumes with
// Last-Event-ID after a dropped connection, stops on `closed` or stop().

import { endpoints } from './config'
import { sessionToken } from './api'

export interface ChatEvent { id: number | null, event: string, data: unknown }

export function streamEvents (conversationId: string, onEvent: (e: ChatEvent) => void): () => void {
  const abort = new AbortController()
  let lastId: string | null = null
  let attempts = 0

  const run = async (): Promise<void> => {
    while (!abort.signal.aborted) {
      try {
        const headers: Record<string, string> = { authorization: `Bearer ${sessionToken() ?? ''}` }
        if (lastId !== null) headers['last-event-id'] = lastId
        const res = await fetch(`${endpoints().controlUrl}/conversations/${conversationId}/events`, {
          headers, signal: abort.signal
        })
        if (res.status === 403 || res.status === 404) {
          onEvent({ id: null, event: 'closed', data: { reason: 'access_revoked' } })
          return
        }
        if (!res.ok || res.body === null) throw new Error(`HTTP ${res.status}`)
        attempts = 0
        if (await read(res.body)) return
      } catch {
        if (abort.signal.aborted) return
      }
      attempts++
      await new Promise((resolve) => setTimeout(resolve, Math.min(200 * 2 ** attempts, 5000)))
    }
  }

  // Returns true when the server closed the stream for good.
  const read = async (body: ReadableStream<Uint8Array>): Promise<boolean> => {
    const reader = body.getReader()
    const decoder = new TextDecoder()
    let buffer = ''
    for (;;) {
      const { value, done } = await reader.read()
      if (done) return false
      buffer += decoder.decode(value, { stream: true })
      let end: number
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        let id: string | null = null
        let event = 'message'
        let data = ''
        for (const line of block.split('\n')) {
          if (line.startsWith('id:')) id = line.slice(3).trim()
          else if (line.startsWith('event:')) event = line.slice(6).trim()
          else if (line.startsWith('data:')) data += line.slice(5).trim()
        }
        if (data === '') continue
        if (id !== null) lastId = id
        onEvent({ id: id === null ? null : Number(id), event, data: JSON.parse(data) })
        if (event === 'closed') return true
      }
    }
  }

  void run()
  return () => abort.abort()
}
