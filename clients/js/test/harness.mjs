// Test support: starts the real `tandem dev` binary (control + relay, a
// fresh SQLite file, ports picked by the OS) and helps set up users, documents
// and conversations through control's HTTP API.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { createTandem } from '@tandem/client'

export const BIN = process.env.TANDEM_BIN || fileURLToPath(new URL('../../../target/debug/tandem', import.meta.url))

/**
 * Starts `tandem dev`; `stop()` ends it and removes its data. `env`: extra settings (e.g.
 * `TANDEM_FILES_PART_BYTES`); files are kept under `filesDir` (the directory backend).
 */
export async function startTandem ({ env = {} } = {}) {
  if (!existsSync(BIN)) throw new Error(`no tandem binary at ${BIN}: run \`cargo build --bin tandem\` (or set TANDEM_BIN)`)
  const dir = mkdtempSync(join(tmpdir(), 'tandem-js-'))
  const child = spawn(BIN, [
    'dev', '--listen', '127.0.0.1:0', '--relay-listen', '127.0.0.1:0',
    // TANDEM_JS_DATABASE_URL (a PostgreSQL URL) runs the suite on PostgreSQL instead.
    '--database-url', process.env.TANDEM_JS_DATABASE_URL || `sqlite://${join(dir, 'tandem.db')}`
  ], {
    env: { ...process.env, TANDEM_PBKDF2_ITERATIONS: '1000', RUST_LOG: process.env.RUST_LOG || 'warn', TANDEM_FILES_DIR: join(dir, 'files'), ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: dir // where a non-SQLite run keeps its dev settings key
  })
  // `tandem dev` prints each verification email's link: `verify EMAIL: LINK`.
  const links = new Map()
  let lines = ''
  child.stdout.on('data', (chunk) => {
    lines += chunk
    const complete = lines.split('\n')
    lines = complete.pop()
    for (const line of complete) {
      const m = line.match(/^verify (\S+): (\S+)$/)
      if (m) links.set(m[1], m[2])
    }
  })
  const urls = await new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`tandem dev did not start: ${out}`)), 30000)
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`tandem dev exited with ${code}: ${out}`)) })
    child.stdout.on('data', (chunk) => {
      out += chunk
      const control = out.match(/control\s+(http:\/\/\S+)/)
      const relay = out.match(/relay\s+(ws:\/\/\S+)/)
      if (control && relay) { clearTimeout(timer); resolve({ controlUrl: control[1], relayUrl: relay[1] }) }
    })
  })
  child.stdout.resume()
  return {
    ...urls,
    /** The verification link printed for `email` (waits for it). */
    async verifyLink (email) {
      await waitFor(() => links.has(email.toLowerCase()) || links.has(email), 10000, `the verification link for ${email}`)
      return links.get(email.toLowerCase()) ?? links.get(email)
    },
    filesDir: join(dir, 'files'),
    async stop () {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGTERM')
        await exited
      }
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

let counter = 0
/** A unique address at a domain that gives each user a personal workspace of their own. */
export const uniqueEmail = (name) => `${name}-${process.pid}-${++counter}@example.com`

/**
 * A Tandem client for `user` (with `ws` as WebSocket), whose fetch counts the
 * collaboration token requests it makes (`client.tokenRequests`).
 */
export function clientFor (tandem, user, extra = {}) {
  const counts = { tokenRequests: 0 }
  const fetchImpl = async (input, init) => {
    if (String(input).endsWith('/collaboration/token')) counts.tokenRequests++
    return (extra.fetch ?? fetch)(input, init)
  }
  const client = createTandem({
    controlUrl: tandem.controlUrl,
    relayUrl: tandem.relayUrl,
    getSessionToken: () => user?.token ?? null,
    WebSocket,
    ...extra,
    fetch: fetchImpl
  })
  return Object.defineProperty(client, 'tokenRequests', { get: () => counts.tokenRequests })
}

/** Signs up a user; returns `{ id, token, email }`. */
export async function signup (tandem, name) {
  const anon = createTandem({ controlUrl: tandem.controlUrl, relayUrl: tandem.relayUrl })
  const email = uniqueEmail(name)
  const r = await anon.api.post('/auth/signup', { body: { email, password: 'password123', displayName: name } })
  return { id: r.user.id, token: r.sessionToken, email }
}

/**
 * Signs up `email` and opens its verification link, as a person would: a verified user at a
 * domain of their own owns their org's team workspace. Returns `{ id, token, email }`.
 */
export async function signupVerified (tandem, email, name = 'Verified') {
  const anon = createTandem({ controlUrl: tandem.controlUrl, relayUrl: tandem.relayUrl })
  const r = await anon.api.post('/auth/signup', { body: { email, password: 'password123', displayName: name } })
  const token = new URL(await tandem.verifyLink(email)).searchParams.get('token')
  await anon.api.post('/auth/verify-email', { body: { token } })
  return { id: r.user.id, token: r.sessionToken, email }
}

/** A project in the user's personal workspace. */
export async function personalProject (tandem, user) {
  const api = clientFor(tandem, user).api
  const session = await api.get('/auth/session')
  const ws = session.workspaces.find((w) => w.type === 'personal')
  return await api.post('/workspaces/{id}/projects', { path: { id: ws.id }, body: { name: 'P' } })
}

/** A document in a new project of the owner's personal workspace, shared with `others` as editors. */
export async function sharedDoc (tandem, owner, others = [], role = 'editor') {
  const api = clientFor(tandem, owner).api
  const project = await personalProject(tandem, owner)
  const doc = await api.post('/projects/{id}/documents', { path: { id: project.id }, body: { title: 'D' } })
  for (const other of others) {
    await api.post('/documents/{id}/members', { path: { id: doc.id }, body: { userId: other.id, role } })
  }
  return doc.id
}

export async function waitFor (pred, ms = 10000, what = 'condition') {
  const start = Date.now()
  while (!(await pred())) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
