// @tandem/react hooks, rendered with react-test-renderer against the real
// services: they reflect the client's state and release its objects.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createElement, act } from 'react'
import TestRenderer from 'react-test-renderer'
import { TandemProvider, useTandemDocument, useConversation } from '@tandem/react'
import { startTandem, signup, sharedDoc, personalProject, clientFor, sleep } from './harness.mjs'

globalThis.IS_REACT_ACT_ENVIRONMENT = true
const warn = console.error
before(() => {
  // react-test-renderer announces its deprecation on every render, and updates
  // caused by real network events arrive outside act() by nature (`until`
  // below flushes them inside act before each look).
  const quiet = ['react-test-renderer is deprecated', 'was not wrapped in act(']
  console.error = (...args) => { if (!quiet.some((q) => String(args[0]).includes(q))) warn(...args) }
})

let tandem
before(async () => { tandem = await startTandem() })
after(async () => { console.error = warn; await tandem?.stop() })

async function until (pred, ms = 10000, what = 'condition') {
  const start = Date.now()
  while (!pred()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`)
    await act(async () => { await sleep(20) })
  }
}

test('useTandemDocument: loading, connected, live edits, revoked, and cleanup on unmount', async () => {
  const owner = await signup(tandem, 'Owner')
  const guest = await signup(tandem, 'Guest')
  const docId = await sharedDoc(tandem, owner, [guest])
  const client = clientFor(tandem, guest)
  const renders = []
  function Editor ({ id }) {
    renders.push(useTandemDocument('doc', id))
    return null
  }
  let root
  await act(async () => { root = TestRenderer.create(createElement(TandemProvider, { client }, createElement(Editor, { id: docId }))) })
  const latest = () => renders.at(-1)
  assert.equal(renders[0].isLoading, true)
  assert.equal(renders[0].isConnected, false)
  await until(() => latest().isConnected && !latest().isLoading, 10000, 'connected and loaded')
  const { yDoc, provider } = latest()
  assert.ok(provider)
  assert.equal(provider.resourceId, docId)

  const ownerConn = clientFor(tandem, owner).connectDocument('doc', docId, new (await import('yjs')).Doc())
  try {
    ownerConn.doc.getText('t').insert(0, 'typed by the owner')
    await until(() => yDoc.getText('t').toString() === 'typed by the owner', 10000, 'edit arrives')
    await clientFor(tandem, owner).api.delete('/documents/{id}/members/{userId}', { path: { id: docId, userId: guest.id } })
    await until(() => latest().revoked !== null, 5000, 'revoked')
    assert.equal(latest().isConnected, false)
    assert.equal(latest().isLoading, false)
    assert.equal(latest().status, 'revoked')
  } finally {
    ownerConn.destroy()
  }
  const requests = client.tokenRequests
  await act(async () => { root.unmount() })
  assert.equal(provider.status, 'disconnected', 'the connection is destroyed with the component')
  await sleep(300)
  assert.equal(client.tokenRequests, requests)
})

test('useTandemDocument: switching resources closes the old connection and opens a new one', async () => {
  const owner = await signup(tandem, 'Switcher')
  const first = await sharedDoc(tandem, owner)
  const second = await sharedDoc(tandem, owner)
  const client = clientFor(tandem, owner)
  const renders = []
  function Editor ({ id }) {
    renders.push(useTandemDocument('doc', id, { client }))
    return null
  }
  let root
  await act(async () => { root = TestRenderer.create(createElement(Editor, { id: first })) })
  await until(() => renders.at(-1).isConnected, 10000, 'first connected')
  const firstProvider = renders.at(-1).provider
  await act(async () => { root.update(createElement(Editor, { id: second })) })
  await until(() => renders.at(-1).isConnected && renders.at(-1).provider?.resourceId === second, 10000, 'second connected')
  assert.equal(firstProvider.status, 'disconnected')
  assert.notEqual(renders.at(-1).yDoc, firstProvider.doc, 'a fresh Y.Doc per resource')
  await act(async () => { root.unmount() })
})

test('useConversation: messages and a streamed reply appear; send posts', async () => {
  const ada = await signup(tandem, 'Ada')
  const client = clientFor(tandem, ada)
  const project = await personalProject(tandem, ada)
  const conversation = await client.api.post('/projects/{id}/conversations', { path: { id: project.id }, body: { title: 'Hooked' } })
  const renders = []
  function Chat ({ id }) {
    renders.push(useConversation(id))
    return null
  }
  let root
  await act(async () => { root = TestRenderer.create(createElement(TandemProvider, { client }, createElement(Chat, { id: conversation.id }))) })
  await until(() => renders.at(-1).loaded, 5000, 'loaded')
  assert.equal(renders.at(-1).conversation.title, 'Hooked')
  await act(async () => { await renders.at(-1).send('hi') })
  const reply = await client.api.post('/conversations/{id}/messages', { path: { id: conversation.id }, body: { role: 'assistant', state: 'streaming', content: '' } })
  for (const delta of ['str', 'eam', 'ed']) {
    await client.api.post('/conversations/{id}/messages/{messageId}/chunks', { path: { id: conversation.id, messageId: reply.id }, body: { delta } })
  }
  await until(() => renders.at(-1).messages[1]?.content === 'streamed', 5000, 'streamed reply')
  assert.equal(renders.at(-1).messages[0].content, 'hi')
  assert.equal(renders.at(-1).messages[1].state, 'streaming')
  await client.api.post('/conversations/{id}/messages/{messageId}/finish', { path: { id: conversation.id, messageId: reply.id }, body: {} })
  await until(() => renders.at(-1).messages[1].state === 'idle', 5000, 'finished')
  const live = renders.at(-1).live
  await act(async () => { root.unmount() })
  assert.equal(live.state.status, 'closed', 'the stream is closed with the component')
})
