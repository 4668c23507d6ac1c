// Typed REST calls and the TandemError mapping, against the real control.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createTandem, TandemError } from '@tandem/client'
import { startTandem, signup, clientFor, uniqueEmail, personalProject } from './harness.mjs'

test('src/generated/api.d.ts matches the OpenAPI document (npm run gen)', () => {
  const gen = fileURLToPath(new URL('../packages/client/scripts/gen.mjs', import.meta.url))
  const r = spawnSync(process.execPath, [gen, '--check'], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr + r.stdout)
})

let tandem
before(async () => { tandem = await startTandem() })
after(async () => { await tandem?.stop() })

test('typed calls: sign up, read the session, create a project and a document', async () => {
  const user = await signup(tandem, 'Typed')
  const api = clientFor(tandem, user).api
  const session = await api.get('/auth/session')
  assert.equal(session.user.id, user.id)
  const personal = session.workspaces.find((w) => w.type === 'personal')
  const project = await api.post('/workspaces/{id}/projects', { path: { id: personal.id }, body: { name: 'Launch' } })
  assert.equal(project.name, 'Launch')
  assert.equal(project.workspaceId, personal.id)
  const doc = await api.post('/projects/{id}/documents', { path: { id: project.id }, body: { title: 'Plan' } })
  assert.equal(doc.title, 'Plan')
  const listed = await api.get('/projects/{id}/documents', { path: { id: project.id } })
  assert.deepEqual(listed.items.map((d) => d.id), [doc.id])
  assert.equal(listed.nextCursor, null, 'one page holds it all')
  assert.equal(await api.delete('/documents/{id}', { path: { id: doc.id } }), undefined, '204 is undefined')
})

test('lists are pages: limit, cursor, all(), and a bad limit or cursor is refused', async () => {
  const user = await signup(tandem, 'Pager')
  const api = clientFor(tandem, user).api
  const project = await personalProject(tandem, user)
  const made = []
  for (const title of ['A', 'B', 'C']) {
    made.push((await api.post('/projects/{id}/documents', { path: { id: project.id }, body: { title } })).id)
  }
  const first = await api.get('/projects/{id}/documents', { path: { id: project.id }, query: { limit: 2 } })
  assert.equal(first.items.length, 2)
  assert.equal(typeof first.nextCursor, 'string')
  const second = await api.get('/projects/{id}/documents', { path: { id: project.id }, query: { limit: 2, cursor: first.nextCursor } })
  assert.equal(second.nextCursor, null)
  assert.deepEqual([...first.items, ...second.items].map((d) => d.id).sort(), [...made].sort())
  const all = await api.all('/projects/{id}/documents', { path: { id: project.id }, query: { limit: 1 } })
  assert.deepEqual(all.map((d) => d.id).sort(), [...made].sort())
  const badLimit = await api.get('/workspaces', { query: { limit: 0 } }).catch((e) => e)
  assert.equal(badLimit.status, 422)
  assert.equal(badLimit.code, 'validation_failed')
  const badCursor = await api.get('/workspaces', { query: { cursor: 'not-a-cursor' } }).catch((e) => e)
  assert.equal(badCursor.status, 400)
  assert.equal(badCursor.code, 'bad_request')
})

test('the session token is asked for on every call', async () => {
  const user = await signup(tandem, 'Rotating')
  let calls = 0
  const client = createTandem({ controlUrl: tandem.controlUrl, relayUrl: tandem.relayUrl, getSessionToken: async () => { calls++; return user.token } })
  await client.api.get('/workspaces')
  await client.api.get('/auth/session')
  assert.equal(calls, 2)
})

test('errors become TandemError with status, code, message and request id', async () => {
  const anon = createTandem({ controlUrl: tandem.controlUrl, relayUrl: tandem.relayUrl })
  const unauthorized = await anon.api.get('/workspaces').catch((e) => e)
  assert.ok(unauthorized instanceof TandemError)
  assert.equal(unauthorized.status, 401)
  assert.equal(unauthorized.code, 'unauthorized')
  assert.equal(unauthorized.retryable, false)

  const user = await signup(tandem, 'Errors')
  const api = clientFor(tandem, user).api
  const missing = await api.get('/projects/{id}/documents', { path: { id: 'no-such-project' } }).catch((e) => e)
  assert.equal(missing.status, 404)
  assert.equal(missing.code, 'not_found')
  assert.equal(typeof missing.message, 'string')
  // Control answers x-request-id (the browser issue): when it does, the error carries it.
  const raw = await fetch(`${tandem.controlUrl}/projects/no-such-project/documents`, { headers: { authorization: `Bearer ${user.token}` } })
  const header = raw.headers.get('x-request-id')
  if (header !== null) assert.ok(missing.requestId, 'requestId from the envelope or header')

  const invalid = await api.post('/workspaces/{id}/projects', { path: { id: 'x' }, body: { name: '' } }).catch((e) => e)
  assert.ok(invalid.status === 404 || invalid.status === 422, String(invalid.status))

  const duplicate = await anon.api.post('/auth/signup', { body: { email: user.email, password: 'password123', displayName: 'Again' } }).catch((e) => e)
  assert.equal(duplicate.status, 409)
  assert.equal(duplicate.code, 'conflict')
})

test('429 carries retryAfter', async () => {
  const anon = createTandem({ controlUrl: tandem.controlUrl, relayUrl: tandem.relayUrl })
  const email = uniqueEmail('nobody')
  let limited = null
  for (let i = 0; i < 40 && limited === null; i++) {
    const err = await anon.api.post('/auth/login', { body: { email, password: 'wrong-password' } }).catch((e) => e)
    if (err.status === 429) limited = err
    else assert.equal(err.status, 401)
  }
  assert.ok(limited, 'rate limited within 40 attempts')
  assert.equal(limited.code, 'rate_limited')
  assert.equal(limited.retryable, true)
  assert.ok(limited.retryAfter > 0, `retryAfter ${limited.retryAfter}`)
})

test('a network failure is a TandemError with status 0', async () => {
  const client = createTandem({ controlUrl: 'http://127.0.0.1:9', relayUrl: 'ws://127.0.0.1:9' })
  const err = await client.api.get('/workspaces').catch((e) => e)
  assert.ok(err instanceof TandemError)
  assert.equal(err.status, 0)
  assert.equal(err.code, 'network')
  assert.equal(err.retryable, true)
})
