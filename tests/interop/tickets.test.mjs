// Resume tickets and stock clients: a stock y-websocket provider never asks
// for tickets (`resume=1`), so it must never receive the ticket message
// (tag 100), which it could not decode. A relay with a 2 s ticket life and
// 300 ms keepalives refreshes tickets several times during the test; a raw
// client that asked sees them, the stock provider in the same room sees none.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { startTandem, api, waitFor } from './harness.mjs'

const TICKET_TAG = 100
let tandem, http
before(async () => {
  const saved = { life: process.env.TANDEM_RESUME_TICKET_SECS, ka: process.env.TANDEM_KEEPALIVE_MS }
  process.env.TANDEM_RESUME_TICKET_SECS = '2'
  process.env.TANDEM_KEEPALIVE_MS = '300'
  try {
    tandem = await startTandem()
  } finally {
    for (const [k, v] of [['TANDEM_RESUME_TICKET_SECS', saved.life], ['TANDEM_KEEPALIVE_MS', saved.ka]]) {
      if (v === undefined) delete process.env[k]; else process.env[k] = v
    }
  }
  http = api(tandem.controlUrl, tandem)
})
after(async () => { await tandem.stop() })

const firstByte = (data) => {
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  return bytes[0]
}

test('a stock y-websocket provider never receives the resume-ticket message', async () => {
  const owner = await http.signup('owner@interop-ticket.dev', 'Owner')
  const docId = await http.teamDoc(owner)
  // What the stock provider's socket receives, frame by frame (first byte = message tag).
  const stockTags = []
  class RecordingWebSocket extends WebSocket {
    constructor (...args) {
      super(...args)
      this.addEventListener('message', (event) => { if (typeof event.data !== 'string') stockTags.push(firstByte(event.data)) })
    }
  }
  const errors = []
  const onError = (err) => errors.push(err)
  process.on('uncaughtException', onError)
  const logged = []
  const consoleError = console.error
  console.error = (...args) => { logged.push(args.join(' ')) }
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(tandem.relayUrl, `doc-${docId}`, doc, {
    params: { token: await http.collabToken(owner, docId) },
    WebSocketPolyfill: RecordingWebSocket,
    shouldReconnect: () => false
  })
  // A client that asks for tickets, in the same room.
  const asked = []
  const raw = new WebSocket(`${tandem.relayUrl}/doc-${docId}?token=${await http.collabToken(owner, docId)}&resume=1`)
  raw.binaryType = 'arraybuffer'
  raw.on('message', (data) => asked.push(data))
  try {
    await waitFor(() => provider.synced, 10000, 'sync')
    doc.getText('t').insert(0, 'stock edit')
    // Two ticket lives: refreshes every second on the asking connection.
    await new Promise((resolve) => setTimeout(resolve, 2500))
    doc.getText('t').insert(0, 'more ')
    await new Promise((resolve) => setTimeout(resolve, 300))
    const tickets = asked.filter((d) => firstByte(d) === TICKET_TAG)
    assert.ok(tickets.length >= 2, `the asking client got a first ticket and refreshes: ${tickets.length}`)
    assert.equal(firstByte(asked[0]), TICKET_TAG, 'the ticket is its first frame')
    // [100][varString json]: a lib0 varUint length, then the JSON.
    const bytes = new Uint8Array(tickets[0])
    let at = 1; let len = 0; let shift = 0
    for (;;) { const b = bytes[at++]; len += (b & 0x7f) * 2 ** shift; shift += 7; if (b < 0x80) break }
    assert.equal(at + len, bytes.length)
    const json = JSON.parse(Buffer.from(bytes.subarray(at)).toString('utf8'))
    assert.match(json.ticket, /^rt1\./)
    assert.equal(json.expiresInSecs, 2)
    assert.ok(stockTags.length > 5, `the stock provider got frames (${stockTags.length})`)
    assert.ok(!stockTags.includes(TICKET_TAG), `no ticket message to the stock provider: ${stockTags}`)
    assert.ok(stockTags.every((t) => t <= 3), `only y-websocket message types: ${stockTags}`)
    assert.deepEqual(errors, [], 'no error thrown')
    assert.deepEqual(logged.filter((l) => /Unable to compute message/.test(l)), [])
    assert.equal(provider.wsconnected, true)
  } finally {
    console.error = consoleError
    process.off('uncaughtException', onError)
    raw.close()
    provider.destroy()
    provider.awareness.destroy()
  }
})
