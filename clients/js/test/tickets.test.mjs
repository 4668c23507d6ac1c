// Resume tickets in @tandem/client: a real `tandem dev` (control) and a
// separate real `tandem-relay` process on the same secret, which the test
// kills (SIGKILL) and starts again on the same port. The connection rejoins
// with its ticket (no token request); when the relay refuses tickets (close
// 4401), it falls back to a fresh token at once.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { dirname, join } from 'node:path'
import * as Y from 'yjs'
import { BIN, startTandem, clientFor, signup, sharedDoc, waitFor } from './harness.mjs'

const RELAY_BIN = process.env.TANDEM_RELAY_BIN || join(dirname(BIN), 'tandem-relay')
const SECRET = `js-ticket-secret-${process.pid}`
let tandem

before(async () => { tandem = await startTandem({ env: { TANDEM_RELAY_SECRET: SECRET } }) })
after(async () => { await tandem.stop() })

const freePort = () => new Promise((resolve, reject) => {
  const server = createServer()
  server.once('error', reject)
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address()
    server.close(() => resolve(port))
  })
})

/** Starts the relay binary on `port`; resolves once `/healthz` answers. */
async function startRelay (port, env = {}) {
  if (!existsSync(RELAY_BIN)) throw new Error(`no relay binary at ${RELAY_BIN}: run \`cargo build --bins\` (or set TANDEM_RELAY_BIN)`)
  const child = spawn(RELAY_BIN, [], {
    env: {
      ...process.env,
      RUST_LOG: 'warn',
      TANDEM_RELAY_LISTEN: `127.0.0.1:${port}`,
      TANDEM_CONTROL_URL: tandem.controlUrl,
      TANDEM_RELAY_SECRET: SECRET,
      TANDEM_KEEPALIVE_MS: '1000',
      ...env
    },
    stdio: ['ignore', 'ignore', 'inherit']
  })
  await waitFor(async () => {
    try { return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok } catch { return false }
  }, 15000, 'the relay answers /healthz')
  return child
}

const kill = async (child) => {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGKILL')
  await exited
}

test('after a relay restart the connection rejoins with its ticket; a refused ticket falls back to a token', async () => {
  const port = await freePort()
  let relay = await startRelay(port)
  const owner = await signup(tandem, 'Ticket')
  const docId = await sharedDoc(tandem, owner)
  const client = clientFor(tandem, owner, { relayUrl: `ws://127.0.0.1:${port}` })
  const conn = client.connectDocument('doc', docId, new Y.Doc(), { backoff: { initialMs: 50, maxMs: 400 } })
  let watcher = null
  try {
    await waitFor(() => conn.synced && conn.ticket !== null, 10000, 'synced with a ticket') // private field: tests may reach in
    assert.match(conn.ticket.ticket, /^rt1\./)
    conn.doc.getText('t').insert(0, 'kept by the client')
    assert.equal(client.tokenRequests, 1)

    // The relay dies without a goodbye and comes back on the same port.
    await kill(relay)
    await waitFor(() => conn.status !== 'connected', 5000, 'noticed the kill')
    relay = await startRelay(port)
    await waitFor(() => conn.synced, 15000, 'resynced after the restart')
    assert.equal(client.tokenRequests, 1, 'rejoined without a token request')
    assert.ok(conn.state.ticketAttempts >= 1, 'with its ticket')
    // The room is live again for others, with what the client kept.
    const other = clientFor(tandem, owner, { relayUrl: `ws://127.0.0.1:${port}` })
    watcher = other.connectDocument('doc', docId, new Y.Doc(), { resumeTickets: false })
    await waitFor(() => watcher.doc.getText('t').toString() === 'kept by the client', 10000, 'the other client sees the text')

    // A relay that refuses every ticket (tickets off): close 4401, then a fresh token at once.
    watcher.destroy(); watcher = null
    await kill(relay)
    await waitFor(() => conn.status !== 'connected', 5000, 'noticed the second kill')
    const ticketAttempts = conn.state.ticketAttempts
    relay = await startRelay(port, { TANDEM_RESUME_TICKET_SECS: '0' })
    await waitFor(() => conn.synced, 15000, 'resynced with a token')
    assert.ok(conn.state.ticketAttempts > ticketAttempts, 'the ticket was tried first')
    assert.equal(client.tokenRequests, 2, 'then one token')
    assert.equal(conn.ticket, null, 'the refused ticket was dropped (and no new one issued)')
    assert.equal(conn.status, 'connected')
  } finally {
    watcher?.destroy()
    conn.destroy()
    await kill(relay)
  }
})

test('resumeTickets: false never asks for a ticket', async () => {
  const port = await freePort()
  const relay = await startRelay(port)
  const owner = await signup(tandem, 'NoTicket')
  const docId = await sharedDoc(tandem, owner)
  const client = clientFor(tandem, owner, { relayUrl: `ws://127.0.0.1:${port}` })
  const conn = client.connectDocument('doc', docId, new Y.Doc(), { resumeTickets: false })
  try {
    await waitFor(() => conn.synced, 10000, 'synced')
    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.equal(conn.ticket, null)
  } finally {
    conn.destroy()
    await kill(relay)
  }
})
