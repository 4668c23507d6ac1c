// Live lists (watchProjects, watchDocuments, watchConversations) over the
// workspace event stream, against the real `tandem dev`: another user's
// changes appear without polling, a dropped stream resumes without a reload,
// a removed member's lists stop with `revoked`.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { watchProjects, watchDocuments, watchConversations } from '@tandem/client'
import { startTandem, signup, clientFor, waitFor } from './harness.mjs'

let tandem
before(async () => { tandem = await startTandem() })
after(async () => { await tandem?.stop() })

/** Ada's personal workspace, with Bo as an editor member. */
async function sharedWorkspace () {
  const ada = await signup(tandem, 'Ada')
  const bo = await signup(tandem, 'Bo')
  const api = clientFor(tandem, ada).api
  const session = await api.get('/auth/session')
  const ws = session.workspaces.find((w) => w.type === 'personal').id
  await api.post('/workspaces/{id}/members', { path: { id: ws }, body: { userId: bo.id, role: 'editor' } })
  return { ada, bo, ws, api }
}

const names = (list) => list.items.map((p) => p.name ?? p.title)

test('projects and documents another member creates, renames and deletes appear live', async () => {
  const { bo, ws, api } = await sharedWorkspace()
  const early = await api.post('/workspaces/{id}/projects', { path: { id: ws }, body: { name: 'Early' } })
  const boClient = clientFor(tandem, bo)
  const projects = watchProjects(boClient, ws)
  const docs = watchDocuments(boClient, ws, early.id)
  try {
    await projects.ready()
    await docs.ready()
    assert.deepEqual(names(projects), ['Early'], 'the first page comes from REST')
    assert.equal(projects.state.status, 'open')

    const latencies = []
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now()
      await api.post('/workspaces/{id}/projects', { path: { id: ws }, body: { name: `Live ${i}` } })
      await waitFor(() => projects.items.length === i + 2, 5000, `project ${i}`)
      latencies.push(performance.now() - t0)
    }
    latencies.sort((a, b) => a - b)
    console.log(`# live list latency (POST sent → item in the other user's list): median ${latencies[2].toFixed(1)} ms, max ${latencies[4].toFixed(1)} ms`)
    assert.deepEqual(names(projects), ['Early', 'Live 0', 'Live 1', 'Live 2', 'Live 3', 'Live 4'])
    assert.equal(projects.items[1].role, 'editor', 'with the reader\'s own role')

    const doc = await api.post('/projects/{id}/documents', { path: { id: early.id }, body: { title: 'Notes' } })
    await waitFor(() => docs.items.length === 1, 5000, 'document')
    await api.patch('/documents/{id}', { path: { id: doc.id }, body: { title: 'Renamed notes' } })
    await waitFor(() => docs.items[0]?.title === 'Renamed notes', 5000, 'rename')
    await api.patch('/projects/{id}', { path: { id: early.id }, body: { name: 'Early (renamed)' } })
    await waitFor(() => projects.items[0]?.name === 'Early (renamed)', 5000, 'project rename')
    await api.delete('/documents/{id}', { path: { id: doc.id } })
    await waitFor(() => docs.items.length === 0, 5000, 'document deleted')
    const last = projects.items[5]
    await api.delete('/projects/{id}', { path: { id: last.id } })
    await waitFor(() => projects.items.length === 5, 5000, 'project deleted')
    assert.ok(!projects.items.some((p) => p.id === last.id))
  } finally {
    projects.close()
    docs.close()
  }
})

test('a dropped stream resumes with Last-Event-ID: nothing missed, nothing reloaded', async () => {
  const { bo, ws, api } = await sharedWorkspace()
  // A fetch whose event-stream responses can be cut, and that counts list loads.
  const bodies = []
  let listLoads = 0
  const cuttable = async (input, init) => {
    const url = String(input)
    if (url.includes('/projects') && !url.includes('/events') && (init?.method ?? 'GET') === 'GET') listLoads++
    const res = await fetch(input, init)
    if (!url.endsWith('/events')) return res
    let cut
    const reader = res.body.getReader()
    const body = new ReadableStream({
      start (controller) { cut = () => controller.error(new Error('cut')) },
      async pull (controller) {
        const { done, value } = await reader.read()
        if (done) controller.close(); else controller.enqueue(value)
      },
      cancel () { reader.cancel().catch(() => {}) }
    })
    bodies.push(() => { cut(); reader.cancel().catch(() => {}) })
    return new Response(body, { status: res.status, headers: res.headers })
  }
  const boClient = clientFor(tandem, bo, { fetch: cuttable })
  const projects = watchProjects(boClient, ws)
  try {
    await projects.ready()
    await api.post('/workspaces/{id}/projects', { path: { id: ws }, body: { name: 'Before' } })
    await waitFor(() => projects.items.length === 1, 5000, 'first project')
    bodies[0]()
    // Written while Bo reconnects (before or after the new request lands: either way no gap).
    for (const name of ['During 1', 'During 2']) await api.post('/workspaces/{id}/projects', { path: { id: ws }, body: { name } })
    await waitFor(() => projects.items.length === 3, 10000, 'the missed projects')
    assert.deepEqual(names(projects), ['Before', 'During 1', 'During 2'])
    assert.equal(bodies.length, 2, 'one reconnect')
    assert.equal(listLoads, 1, 'the list was loaded once: the resume filled the gap')
  } finally {
    projects.close()
  }
})

test('conversations appear for new participants and leave with them; a removed member is revoked', async () => {
  const { ada, bo, ws, api } = await sharedWorkspace()
  const project = await api.post('/workspaces/{id}/projects', { path: { id: ws }, body: { name: 'Chats' } })
  const boClient = clientFor(tandem, bo)
  const chats = watchConversations(boClient, ws, { projectId: project.id })
  const projects = watchProjects(boClient, ws)
  try {
    await chats.ready()
    await projects.ready()
    const mine = await api.post('/projects/{id}/conversations', { path: { id: project.id }, body: { title: 'Ada only' } })
    const ours = await api.post('/projects/{id}/conversations', { path: { id: project.id }, body: { title: 'Ours' } })
    await api.post('/conversations/{id}/participants', { path: { id: ours.id }, body: { userId: bo.id } })
    await waitFor(() => chats.items.length === 1, 5000, 'the shared conversation')
    assert.equal(chats.items[0].id, ours.id)
    await api.patch('/conversations/{id}', { path: { id: mine.id }, body: { title: 'still Ada only' } })
    await api.patch('/conversations/{id}', { path: { id: ours.id }, body: { title: 'Ours, renamed' } })
    await waitFor(() => chats.items[0]?.title === 'Ours, renamed', 5000, 'the rename')
    assert.equal(chats.items.length, 1, 'never the private one')
    await api.delete('/conversations/{id}/participants/{userId}', { path: { id: ours.id, userId: bo.id } })
    await waitFor(() => chats.items.length === 0, 5000, 'removal from the conversation')

    await api.delete('/workspaces/{id}/members/{userId}', { path: { id: ws, userId: bo.id } })
    await waitFor(() => projects.state.revoked !== null && chats.state.revoked !== null, 5000, 'revoked')
    assert.equal(projects.state.revoked, 'access_revoked')
    assert.equal(projects.state.status, 'closed')
    void ada
  } finally {
    chats.close()
    projects.close()
  }
})
