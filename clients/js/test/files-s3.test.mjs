// @tandem/client files against control on the S3 backend (a real SeaweedFS:
// scripts/test sets TANDEM_TEST_S3_URL=http://KEY:SECRET@HOST:PORT/BUCKET).
// A small file's one PUT goes to control, which passes the bytes on to the
// store and completes the upload in that request: the client sends no
// completion. A larger one goes to the store's presigned URL and is completed.
// A multipart file's parts go through control too, each after the first with
// the SHA-256 state it starts from, so completing it reads nothing back.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { Sha256 } from '@tandem/client'
import { startTandem, signup, clientFor } from './harness.mjs'

const s3 = process.env.TANDEM_TEST_S3_URL ? new URL(process.env.TANDEM_TEST_S3_URL) : null
const skip = s3 === null ? 'TANDEM_TEST_S3_URL is not set (scripts/test sets it)' : false
const LIMIT = 100_000
const PART = 5 * 1024 * 1024 // the smallest part S3 takes
let tandem
before(async () => {
  if (s3 === null) return
  tandem = await startTandem({
    env: {
      TANDEM_FILES_BACKEND: 's3',
      TANDEM_S3_ENDPOINT: `${s3.protocol}//${s3.host}`,
      TANDEM_S3_BUCKET: s3.pathname.replace(/^\/|\/$/g, ''),
      TANDEM_S3_ACCESS_KEY_ID: decodeURIComponent(s3.username),
      TANDEM_S3_SECRET_ACCESS_KEY: decodeURIComponent(s3.password),
      TANDEM_S3_THROUGH_CONTROL_BYTES: String(LIMIT),
      TANDEM_FILES_PART_BYTES: String(PART)
    }
  })
})
after(async () => { await tandem?.stop() })

const sha = (bytes) => createHash('sha256').update(bytes).digest('hex')

test('on S3, a small file is sent through control and completed by its PUT; a larger one goes to the store', { skip }, async () => {
  const requests = []
  const recording = async (input, init = {}) => {
    requests.push(`${(init.method ?? 'GET').toUpperCase()} ${String(input)}`)
    return await fetch(input, init)
  }
  const alice = await signup(tandem, 'Alice')
  const bob = await signup(tandem, 'Bob')
  const a = clientFor(tandem, alice, { fetch: recording })
  const b = clientFor(tandem, bob)
  const session = await a.api.get('/auth/session')
  const ws = session.workspaces.find((w) => w.type === 'personal')
  await a.api.post('/workspaces/{id}/members', { path: { id: ws.id }, body: { userId: bob.id, role: 'viewer' } })

  for (const [size, throughControl] of [[LIMIT, true], [LIMIT + 1, false]]) {
    requests.length = 0
    const bytes = randomBytes(size)
    const up = a.files.upload(ws.id, bytes, { name: `${size}.bin` })
    const progress = []
    up.on('progress', (p) => progress.push(p.loaded))
    const file = await up.settled()
    assert.equal(file.sha256, sha(bytes))
    assert.equal(progress.at(-1), size)
    const puts = requests.filter((r) => r.startsWith('PUT '))
    assert.equal(puts.length, 1, requests.join('\n'))
    assert.equal(puts[0].startsWith(`PUT ${tandem.controlUrl}/blobs/`), throughControl, puts[0])
    const completions = requests.filter((r) => r.includes('/complete'))
    assert.equal(completions.length, throughControl ? 0 : 1, requests.join('\n'))
    const { blob } = await b.files.download(file.id).settled()
    assert.ok(Buffer.from(await blob.arrayBuffer()).equals(bytes), `${size} bytes, byte for byte`)
  }
})

async function readBack () {
  const text = await (await fetch(`${tandem.controlUrl}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith('tandem_control_files_readback_bytes_total '))
  assert.ok(line !== undefined, 'the read-back metric')
  return Number(line.split(' ')[1])
}

test('on S3, a multipart file\'s parts go through control with their SHA-256 states, and completing reads nothing back', { skip }, async () => {
  const alice = await signup(tandem, 'Alice')
  const bob = await signup(tandem, 'Bob')
  const session = await clientFor(tandem, alice).api.get('/auth/session')
  const ws = session.workspaces.find((w) => w.type === 'personal')
  const admin = clientFor(tandem, alice)
  await admin.api.post('/workspaces/{id}/members', { path: { id: ws.id }, body: { userId: bob.id, role: 'viewer' } })
  const b = clientFor(tandem, bob)
  // Bytes in memory hashed by WebCrypto (states computed as the parts go), and a Blob hashed
  // incrementally (states kept while hashing).
  for (const [kind, webCryptoLimit] of [['bytes', undefined], ['blob', 1024 * 1024]]) {
    const puts = []
    const recording = async (input, init = {}) => {
      if ((init.method ?? 'GET').toUpperCase() === 'PUT') puts.push({ url: String(input), state: init.headers?.['tandem-sha256-state'] })
      return await fetch(input, init)
    }
    const a = clientFor(tandem, alice, { fetch: recording, files: { partConcurrency: 2, ...(webCryptoLimit ? { webCryptoLimit } : {}) } })
    const bytes = randomBytes(2 * PART + 4321)
    const before = await readBack()
    const file = await a.files.upload(ws.id, kind === 'blob' ? new Blob([bytes]) : bytes, { name: `${kind}.bin` }).settled()
    assert.equal(file.sha256, sha(bytes))
    assert.equal(puts.length, 3, JSON.stringify(puts))
    for (const put of puts) assert.ok(put.url.startsWith(`${tandem.controlUrl}/blobs/`), put.url)
    const byPart = new Map(puts.map((p) => [Number(/parts\/(\d+)/.exec(p.url)[1]), p.state]))
    assert.equal(byPart.get(1), undefined, 'the first part starts from SHA-256\'s own start')
    for (const n of [2, 3]) {
      const offset = (n - 1) * PART
      assert.match(byPart.get(n) ?? '', /^[0-9a-f]{64}$/, `part ${n} carries its state`)
      const h = new Sha256().update(bytes.subarray(0, offset))
      assert.equal(byPart.get(n), h.state(), `part ${n}: the state at ${offset}`)
    }
    assert.equal(await readBack(), before, `${kind}: proven by its parts' states, not read back`)
    const { blob } = await b.files.download(file.id).settled()
    assert.ok(Buffer.from(await blob.arrayBuffer()).equals(bytes), `${kind}: byte for byte`)
  }
})

test('on S3, a multipart upload resumed from a checkpoint in a new session sends the missing parts with their states', { skip }, async () => {
  const alice = await signup(tandem, 'Alice')
  const session = await clientFor(tandem, alice).api.get('/auth/session')
  const ws = session.workspaces.find((w) => w.type === 'personal')
  const bytes = randomBytes(2 * PART + 999)
  // The first session's network goes down after its first part.
  let ok = 0
  const flaky = async (input, init = {}) => {
    if ((init.method ?? 'GET').toUpperCase() === 'PUT' && ok >= 1) throw new TypeError('fetch failed (network down)')
    const res = await fetch(input, init)
    if ((init.method ?? 'GET').toUpperCase() === 'PUT' && res.ok) ok++
    return res
  }
  const first = clientFor(tandem, alice, { fetch: flaky, files: { partConcurrency: 1, retries: 0 } })
  const up = first.files.upload(ws.id, bytes, { name: 'resumed.bin' })
  await up.settled().catch(() => {})
  assert.equal(up.state, 'failed')
  const checkpoint = JSON.parse(JSON.stringify(up.checkpoint)) // as if kept in localStorage
  assert.deepEqual(Object.keys(checkpoint.done).map(Number), [1])

  // A new session knows no states: it computes them from the bytes before each missing part.
  const puts = []
  const recording = async (input, init = {}) => {
    if ((init.method ?? 'GET').toUpperCase() === 'PUT') puts.push({ url: String(input), state: init.headers?.['tandem-sha256-state'] })
    return await fetch(input, init)
  }
  const before = await readBack()
  const later = clientFor(tandem, alice, { fetch: recording })
  const file = await later.files.upload(ws.id, bytes, { resume: checkpoint }).settled()
  assert.equal(file.sha256, sha(bytes))
  assert.deepEqual(puts.map((p) => Number(/parts\/(\d+)/.exec(p.url)[1])).sort(), [2, 3], 'only the missing parts')
  for (const p of puts) {
    const n = Number(/parts\/(\d+)/.exec(p.url)[1])
    assert.equal(p.state, new Sha256().update(bytes.subarray(0, (n - 1) * PART)).state(), `part ${n}'s state`)
  }
  assert.equal(await readBack(), before, 'proven by the states, not read back')
})
