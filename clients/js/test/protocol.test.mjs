// DocumentConnection against a scripted WebSocket server, for what the real
// relay cannot be made to do on demand: the y-protocols auth message, fatal
// close codes, a socket that goes silent, stray text frames, garbage frames.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { WebSocketServer, WebSocket } from 'ws'
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import * as syncProtocol from 'y-protocols/sync'
import * as authProtocol from 'y-protocols/auth'
import { DocumentConnection } from '@tandem/client'
import { waitFor, sleep } from './harness.mjs'

const servers = []
after(() => { for (const s of servers) s.close() })

/** A server that runs `script(socket, token, n)` for the n-th connection. */
async function scripted (script) {
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  servers.push(server)
  await new Promise((resolve) => server.once('listening', resolve))
  const seen = { connections: 0, tokens: [], paths: [] }
  server.on('connection', (socket, req) => {
    const url = new URL(req.url, 'http://x')
    seen.paths.push(url.pathname)
    seen.tokens.push(url.searchParams.get('token'))
    script(socket, url.searchParams.get('token'), ++seen.connections)
  })
  return { url: `ws://127.0.0.1:${server.address().port}`, seen }
}

function transport (relayUrl) {
  const counts = { tokens: 0 }
  return {
    counts,
    relayUrl,
    WebSocket,
    requestToken: async (type, id) => { counts.tokens++; return { token: `token-${counts.tokens}`, roomId: `${type}-${id}` } }
  }
}

const step1 = () => {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, 0)
  syncProtocol.writeSyncStep1(e, new Y.Doc())
  return encoding.toUint8Array(e)
}
const step2 = () => {
  const e = encoding.createEncoder()
  encoding.writeVarUint(e, 0)
  syncProtocol.writeSyncStep2(e, new Y.Doc())
  return encoding.toUint8Array(e)
}

test('the y-protocols auth message (permission denied) revokes for good', async () => {
  const relay = await scripted((socket) => {
    socket.send(step1()); socket.send(step2())
    setTimeout(() => {
      const e = encoding.createEncoder()
      encoding.writeVarUint(e, 2)
      authProtocol.writePermissionDenied(e, '{"type":"permission_revoked","reason":"gone"}')
      socket.send(encoding.toUint8Array(e))
      socket.close(1008, 'AUTH_FORBIDDEN')
    }, 50)
  })
  const t = transport(relay.url)
  const conn = new DocumentConnection(t, 'doc', 'd1', new Y.Doc(), { backoff: { initialMs: 10, maxMs: 20 } })
  const revoked = []
  conn.on('revoked', (r) => revoked.push(r))
  try {
    await waitFor(() => conn.status === 'revoked', 5000, 'revoked')
    assert.equal(revoked.length, 1)
    assert.equal(revoked[0].source, 'auth-message')
    assert.equal(revoked[0].reason, 'gone', 'the human part of the JSON notice')
    await sleep(200)
    assert.equal(t.counts.tokens, 1)
    assert.equal(relay.seen.connections, 1)
    assert.deepEqual(relay.seen.paths, ['/doc-d1'])
    assert.deepEqual(relay.seen.tokens, ['token-1'])
  } finally { conn.destroy() }
})

test('close 1008 alone revokes; the JSON notice alone revokes', async () => {
  for (const [how, source] of [['close', 'close'], ['notice', 'notice']]) {
    const relay = await scripted((socket) => {
      socket.send(step1())
      if (how === 'notice') socket.send(JSON.stringify({ type: 'permission_revoked', reason: 'Your access was revoked' }))
      else socket.close(1008, 'AUTH_FORBIDDEN')
    })
    const t = transport(relay.url)
    const conn = new DocumentConnection(t, 'doc', 'd2', new Y.Doc(), { backoff: { initialMs: 10, maxMs: 20 } })
    try {
      await waitFor(() => conn.status === 'revoked', 5000, `revoked by ${how}`)
      assert.equal(conn.revoked.source, source)
      await sleep(100)
      assert.equal(t.counts.tokens, 1)
    } finally { conn.destroy() }
  }
})

test('a fatal close code stops with failed', async () => {
  const relay = await scripted((socket) => { socket.close(1002, 'BAD_MESSAGE') })
  const t = transport(relay.url)
  const conn = new DocumentConnection(t, 'doc', 'd3', new Y.Doc(), { backoff: { initialMs: 10, maxMs: 20 } })
  try {
    await waitFor(() => conn.status === 'failed', 5000, 'failed')
    assert.match(String(conn.state.error), /1002/)
    await sleep(100)
    assert.equal(t.counts.tokens, 1)
  } finally { conn.destroy() }
})

test('a silent socket is dropped and reconnected with a new token; stray text and garbage do not break it', async () => {
  const relay = await scripted((socket, token, n) => {
    if (n === 1) return // silent forever
    socket.send('not json at all')
    socket.send(new Uint8Array([7, 7, 7])) // an unknown message type: ignored
    socket.send(step1()); socket.send(step2())
  })
  const t = transport(relay.url)
  const conn = new DocumentConnection(t, 'doc', 'd4', new Y.Doc(), { timeoutMs: 300, backoff: { initialMs: 10, maxMs: 20 } })
  try {
    await waitFor(() => conn.synced, 5000, 'synced on the second socket')
    assert.equal(relay.seen.connections, 2)
    assert.deepEqual(relay.seen.tokens, ['token-1', 'token-2'])
    assert.equal(conn.status, 'connected')
  } finally { conn.destroy() }
})

test('a truncated frame drops the socket and reconnects', async () => {
  const relay = await scripted((socket, token, n) => {
    if (n === 1) { socket.send(new Uint8Array([1])); return } // an awareness message cut short
    socket.send(step1()); socket.send(step2())
  })
  const t = transport(relay.url)
  const errors = []
  const conn = new DocumentConnection(t, 'doc', 'd5', new Y.Doc(), { backoff: { initialMs: 10, maxMs: 20 } })
  conn.on('error', (e) => errors.push(e))
  try {
    await waitFor(() => conn.synced, 5000, 'synced after the bad frame')
    assert.equal(relay.seen.connections, 2)
    assert.equal(errors.length, 1)
  } finally { conn.destroy() }
})

test('token request failures: 5xx/network retried with backoff, 401 fails, 403 revokes', async () => {
  const { TandemError } = await import('@tandem/client')
  const relay = await scripted((socket) => { socket.send(step1()); socket.send(step2()) })
  let calls = 0
  const flaky = {
    relayUrl: relay.url,
    WebSocket,
    requestToken: async (type, id) => {
      calls++
      if (calls === 1) throw new TandemError({ status: 0, code: 'network', message: 'down' })
      if (calls === 2) throw new TandemError({ status: 503, code: 'unavailable', message: 'later' })
      return { token: `t${calls}`, roomId: `${type}-${id}` }
    }
  }
  const conn = new DocumentConnection(flaky, 'doc', 'd6', new Y.Doc(), { backoff: { initialMs: 10, maxMs: 20 } })
  try {
    await waitFor(() => conn.synced, 5000, 'synced after two failed token requests')
    assert.equal(calls, 3)
  } finally { conn.destroy() }

  for (const [status, expected] of [[401, 'failed'], [403, 'revoked']]) {
    let n = 0
    const refusing = { relayUrl: relay.url, WebSocket, requestToken: async () => { n++; throw new TandemError({ status, code: 'x', message: 'no' }) } }
    const c = new DocumentConnection(refusing, 'doc', 'd7', new Y.Doc(), { backoff: { initialMs: 10, maxMs: 20 } })
    try {
      await waitFor(() => c.status === expected, 5000, expected)
      await sleep(100)
      assert.equal(n, 1)
    } finally { c.destroy() }
  }
})
