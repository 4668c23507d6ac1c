// Conversation event streams over fetch-based SSE: the parser, live
// messages and streamed replies, and Last-Event-ID resume without gaps.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { SseParser } from '@tandem/client'
import { startTandem, signup, personalProject, clientFor, waitFor } from './harness.mjs'

test('SseParser: fields, comments, multi-line data, CRLF and chunks split anywhere', () => {
  const text = ': hello\r\nid: 1\r\nevent: chunk\r\ndata: {"a":\r\ndata: 1}\r\n\r\nid: 2\ndata: x\n\nevent: closed\ndata: {}\n\n:keepalive\n\nretry: 500\nid\ndata: y\n\n'
  const whole = new SseParser().push(text)
  const expected = [
    { id: '1', event: 'chunk', data: '{"a":\n1}' },
    { id: '2', event: 'message', data: 'x' },
    { id: undefined, event: 'closed', data: '{}' },
    { id: '', event: 'message', data: 'y' }
  ]
  assert.deepEqual(whole, expected)
  for (let size = 1; size <= 7; size++) {
    const parser = new SseParser()
    const events = []
    for (let i = 0; i < text.length; i += size) events.push(...parser.push(text.slice(i, i + size)))
    assert.deepEqual(events, expected, `chunks of ${size}`)
    assert.equal(parser.retryMs, 500)
  }
})

test('SseParser: an id-only frame dispatches nothing but moves the last event id', () => {
  const parser = new SseParser()
  assert.deepEqual(parser.push('id: 4\nevent: a\ndata: {}\n\n'), [{ id: '4', event: 'a', data: '{}' }])
  assert.equal(parser.lastEventId, '4')
  assert.deepEqual(parser.push('id: 9\n\n'), [])
  assert.equal(parser.lastEventId, '9')
  assert.deepEqual(parser.push(': keepalive\n\n'), [])
  assert.equal(parser.lastEventId, '9')
})

let tandem
before(async () => { tandem = await startTandem() })
after(async () => { await tandem?.stop() })

async function conversationWith (owner, others = []) {
  const api = clientFor(tandem, owner).api
  const project = await personalProject(tandem, owner)
  const conversation = await api.post('/projects/{id}/conversations', { path: { id: project.id }, body: { title: 'Chat' } })
  for (const other of others) await api.post('/conversations/{id}/participants', { path: { id: conversation.id }, body: { userId: other.id } })
  return conversation
}

async function streamReply (api, conversationId, parts) {
  const m = await api.post('/conversations/{id}/messages', { path: { id: conversationId }, body: { role: 'assistant', state: 'streaming', content: '' } })
  for (const delta of parts) await api.post('/conversations/{id}/messages/{messageId}/chunks', { path: { id: conversationId, messageId: m.id }, body: { delta } })
  await api.post('/conversations/{id}/messages/{messageId}/finish', { path: { id: conversationId, messageId: m.id }, body: {} })
  return m
}

test('a live conversation shows messages and a streamed reply to every participant', async () => {
  const ada = await signup(tandem, 'Ada')
  const bo = await signup(tandem, 'Bo')
  const conversation = await conversationWith(ada, [bo])
  const adaClient = clientFor(tandem, ada)
  const a = adaClient.conversation(conversation.id)
  const b = clientFor(tandem, bo).conversation(conversation.id)
  try {
    await waitFor(() => a.state.loaded && b.state.loaded, 5000, 'snapshots')
    assert.equal(a.state.conversation.title, 'Chat')
    assert.equal(a.state.status, 'open')
    assert.equal(a.state.olderMessages, false, 'the snapshot holds every message')
    await b.send('hello from Bo')
    const parts = ['Hel', 'lo ', 'wörld ', '🙂', ' done']
    const reply = await streamReply(adaClient.api, conversation.id, parts)
    const done = (c) => c.messages.length === 2 && c.messages[1].state === 'idle'
    await waitFor(() => done(a.state) && done(b.state), 5000, 'reply finished for both')
    for (const c of [a, b]) {
      assert.equal(c.messages[0].content, 'hello from Bo')
      assert.equal(c.messages[0].senderUser.displayName, 'Bo')
      assert.equal(c.messages[1].id, reply.id)
      assert.equal(c.messages[1].content, parts.join(''))
      assert.equal(c.state.outOfSync, false)
    }
    await adaClient.api.patch('/conversations/{id}', { path: { id: conversation.id }, body: { title: 'Renamed' } })
    await waitFor(() => b.state.conversation.title === 'Renamed', 5000, 'rename')
    assert.equal(b.state.conversation.role, 'editor', 'each viewer keeps their own role')
  } finally {
    a.close(); b.close()
  }
})

test('a stream resumes with Last-Event-ID: no gap, no repeat, no fresh snapshot', async () => {
  const ada = await signup(tandem, 'Ada')
  const conversation = await conversationWith(ada)
  const client = clientFor(tandem, ada)
  const first = client.conversationEvents(conversation.id)
  const seen = []
  first.on('event', (e) => seen.push(e))
  let lastId
  try {
    await waitFor(() => seen.length === 1, 5000, 'snapshot')
    assert.equal(seen[0].event, 'snapshot')
    await client.api.post('/conversations/{id}/messages', { path: { id: conversation.id }, body: { content: 'one' } })
    await waitFor(() => seen.some((e) => e.event === 'message'), 5000, 'first message')
    lastId = first.lastEventId
    assert.equal(lastId, seen.at(-1).id)
  } finally {
    first.close()
  }
  // Written while nobody listens.
  await client.api.post('/conversations/{id}/messages', { path: { id: conversation.id }, body: { content: 'two' } })
  await streamReply(client.api, conversation.id, ['a', 'b', 'c'])
  const second = client.conversationEvents(conversation.id, { lastEventId: lastId })
  const resumed = []
  second.on('event', (e) => resumed.push(e))
  try {
    await waitFor(() => resumed.some((e) => e.event === 'message_finished'), 5000, 'resumed events')
    const kinds = resumed.map((e) => e.event)
    assert.deepEqual(kinds, ['message', 'message', 'chunk', 'chunk', 'chunk', 'message_finished'])
    const ids = resumed.map((e) => Number(e.id))
    assert.deepEqual(ids, ids.map((_, i) => Number(lastId) + 1 + i), 'contiguous ids right after the last one seen')
    assert.equal(JSON.parse(resumed[0].data).data.content, 'two')
  } finally {
    second.close()
  }
})

test('a dropped stream reconnects by itself and continues after the last event', async () => {
  const ada = await signup(tandem, 'Ada')
  const conversation = await conversationWith(ada)
  // The first events response dies after its first bytes, as a flaky proxy would.
  let requests = 0
  const headersSeen = []
  const flakyFetch = async (input, init) => {
    const res = await fetch(input, init)
    if (!String(input).endsWith('/events')) return res
    requests++
    headersSeen.push(new Headers(init.headers).get('last-event-id'))
    if (requests !== 1) return res
    const reader = res.body.getReader()
    const body = new ReadableStream({
      async pull (controller) {
        const { done, value } = await reader.read()
        if (done) return controller.close()
        controller.enqueue(value)
        reader.cancel().catch(() => {})
        controller.error(new Error('connection reset'))
      }
    })
    return new Response(body, { status: res.status, headers: res.headers })
  }
  const client = clientFor(tandem, ada, { fetch: flakyFetch })
  const live = client.conversation(conversation.id, { backoff: { initialMs: 20, maxMs: 50 } })
  try {
    await waitFor(() => live.state.loaded, 5000, 'snapshot')
    await waitFor(() => requests === 2 && live.state.status === 'open', 5000, 'reconnected')
    assert.deepEqual(headersSeen, [null, live.lastEventId])
    await client.api.post('/conversations/{id}/messages', { path: { id: conversation.id }, body: { content: 'after the drop' } })
    await waitFor(() => live.messages.length === 1, 5000, 'message after reconnect')
    assert.equal(live.messages[0].content, 'after the drop')
  } finally {
    live.close()
  }
})

test('a removed participant gets closed and the stream stops; a stranger is refused', async () => {
  const ada = await signup(tandem, 'Ada')
  const bo = await signup(tandem, 'Bo')
  const conversation = await conversationWith(ada, [bo])
  const boClient = clientFor(tandem, bo)
  const live = boClient.conversation(conversation.id)
  try {
    await waitFor(() => live.state.loaded, 5000, 'snapshot')
    await clientFor(tandem, ada).api.delete('/conversations/{id}/participants/{userId}', { path: { id: conversation.id, userId: bo.id } })
    await waitFor(() => live.state.status === 'closed', 5000, 'closed')
    assert.equal(live.state.closedReason, 'access_revoked')
  } finally {
    live.close()
  }
  const stranger = await signup(tandem, 'Stranger')
  const errors = []
  const refused = clientFor(tandem, stranger).conversationEvents(conversation.id)
  refused.on('error', (e) => errors.push(e))
  await waitFor(() => refused.status === 'closed', 5000, 'refused')
  assert.equal(errors[0].status, 404)
  assert.equal(refused.connections, 1, 'no retry after a 404')
})

test('a chunk that does not line up (a gap) makes the live conversation start over from a snapshot', async () => {
  const ada = await signup(tandem, 'Ada')
  const conversation = await conversationWith(ada)
  // On the first events request, a proxy loses the first chunk event.
  let requests = 0
  const lossyFetch = async (input, init) => {
    const res = await fetch(input, init)
    if (!String(input).endsWith('/events')) return res
    if (++requests !== 1) return res
    let buffer = ''
    let dropped = false
    const encoder = new TextEncoder()
    const body = res.body.pipeThrough(new TextDecoderStream()).pipeThrough(new TransformStream({
      transform (text, controller) {
        buffer += text
        let end
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end + 2)
          buffer = buffer.slice(end + 2)
          if (!dropped && block.includes('event: chunk')) { dropped = true; continue }
          controller.enqueue(encoder.encode(block))
        }
      }
    }))
    return new Response(body, { status: res.status, headers: res.headers })
  }
  const client = clientFor(tandem, ada, { fetch: lossyFetch })
  const live = client.conversation(conversation.id, { backoff: { initialMs: 20, maxMs: 50 } })
  try {
    await waitFor(() => live.state.loaded, 5000, 'snapshot')
    await streamReply(client.api, conversation.id, ['lost ', 'and ', 'found'])
    await waitFor(() => live.messages[0]?.content === 'lost and found' && live.messages[0].state === 'idle', 5000, 'repaired text')
    assert.equal(requests, 2, 'one fresh stream')
    assert.equal(live.state.outOfSync, false)
    assert.equal(live.state.status, 'open')
  } finally {
    live.close()
  }
})

test('eventStream reads any of control stream paths with the same resume machinery', async () => {
  const ada = await signup(tandem, 'Ada')
  const conversation = await conversationWith(ada)
  const client = clientFor(tandem, ada)
  const stream = client.eventStream(`/conversations/${conversation.id}/events`, { lastEventId: '0' })
  const seen = []
  stream.on('event', (e) => seen.push(e))
  try {
    await client.api.post('/conversations/{id}/messages', { path: { id: conversation.id }, body: { content: 'x' } })
    await waitFor(() => seen.length === 1, 5000, 'the message after id 0')
    assert.equal(seen[0].event, 'message')
    assert.equal(seen[0].id, '1')
  } finally {
    stream.close()
  }
})

test('a stream that goes silent (no keepalive) is dropped after idleTimeoutMs and resumed', async () => {
  const ada = await signup(tandem, 'Ada')
  const conversation = await conversationWith(ada)
  // The first events response delivers its first bytes, then nothing, ever (a dead connection).
  let requests = 0
  const stallingFetch = async (input, init) => {
    const res = await fetch(input, init)
    if (!String(input).endsWith('/events') || ++requests !== 1) return res
    const reader = res.body.getReader()
    let sent = false
    const body = new ReadableStream({
      async pull (controller) {
        if (sent) return new Promise(() => {}) // stalls
        const { value } = await reader.read()
        sent = true
        controller.enqueue(value)
      },
      cancel () { reader.cancel().catch(() => {}) }
    })
    init.signal?.addEventListener('abort', () => reader.cancel().catch(() => {}))
    return new Response(body, { status: res.status, headers: res.headers })
  }
  const client = clientFor(tandem, ada, { fetch: stallingFetch })
  const errors = []
  const live = client.conversation(conversation.id, { idleTimeoutMs: 300, backoff: { initialMs: 20, maxMs: 50 } })
  live.on('error', (e) => errors.push(e))
  try {
    await waitFor(() => live.state.loaded, 5000, 'snapshot')
    await waitFor(() => requests === 2, 5000, 'reconnected after the silence')
    assert.equal(errors[0]?.code, 'timeout')
    await client.api.post('/conversations/{id}/messages', { path: { id: conversation.id }, body: { content: 'still here' } })
    await waitFor(() => live.messages.length === 1, 5000, 'message after the reconnect')
  } finally {
    live.close()
  }
})
