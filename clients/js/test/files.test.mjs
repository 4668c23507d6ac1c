// tandem.files against the real control (directory backend, parts of 1 MiB):
// upload by one member and byte-for-byte download by another, dedupe without
// sending bytes, monotonic progress, the queue's bound, resume of an
// interrupted multipart upload without resending parts (in the same session
// and from a checkpoint in a new one), retries after a transient failure,
// pause and resume, a corrupted stored file refused on download, message
// attachments.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { TandemError, Sha256 } from '@tandem/client'
import { startTandem, signup, clientFor } from './harness.mjs'

const PART = 1024 * 1024
let tandem
before(async () => { tandem = await startTandem({ env: { TANDEM_FILES_PART_BYTES: String(PART) } }) })
after(async () => { await tandem?.stop() })

const sha = (bytes) => createHash('sha256').update(bytes).digest('hex')
const fast = { retries: 2, backoff: { initialMs: 5, maxMs: 20 } }

/** A fetch that counts (and may fail) the requests to signed part URLs, i.e. everything but control's API. */
function wire () {
  const w = {
    puts: [], // every part PUT attempted: its URL
    sent: new Map(), // URL → successful PUTs
    failAfter: Infinity, // successful PUTs allowed before every further PUT fails like a dropped network
    failNext: 0, // the next N PUTs fail (a transient drop)
    fetch: async (input, init = {}) => {
      const url = String(input)
      if ((init.method ?? 'GET').toUpperCase() !== 'PUT') return fetch(input, init)
      w.puts.push(url)
      if (w.failNext > 0 && w.sent.size > 0) { w.failNext--; throw new TypeError('fetch failed (connection reset)') }
      const ok = [...w.sent.values()].reduce((a, b) => a + b, 0)
      if (ok >= w.failAfter) throw new TypeError('fetch failed (network down)')
      const res = await fetch(input, init)
      if (res.ok) w.sent.set(url, (w.sent.get(url) ?? 0) + 1)
      return res
    }
  }
  return w
}

/** Alice's personal workspace, Bob a member of it; clients for both. */
async function team (aliceOptions = {}, bobOptions = {}) {
  const alice = await signup(tandem, 'Alice')
  const bob = await signup(tandem, 'Bob')
  const a = clientFor(tandem, alice, aliceOptions)
  const session = await a.api.get('/auth/session')
  const ws = session.workspaces.find((w) => w.type === 'personal')
  await a.api.post('/workspaces/{id}/members', { path: { id: ws.id }, body: { userId: bob.id, role: 'editor' } })
  return { alice, bob, a, b: clientFor(tandem, bob, bobOptions), ws }
}

function monotonic (events, total) {
  assert.ok(events.length > 0, 'progress events')
  for (let i = 1; i < events.length; i++) assert.ok(events[i].loaded >= events[i - 1].loaded, `progress went back: ${JSON.stringify(events)}`)
  assert.ok(events.every((e) => e.total === total))
  assert.equal(events.at(-1).loaded, total)
}

test('the incremental sha256 equals node:crypto', () => {
  for (const n of [0, 1, 55, 56, 63, 64, 65, 1000, 200_000]) {
    const bytes = randomBytes(n)
    const h = new Sha256()
    for (let i = 0; i < n; i += 777) h.update(bytes.subarray(i, i + 777))
    assert.equal(h.hex(), sha(bytes), `${n} bytes`)
  }
})

test('a SHA-256 state carried to the next part gives the whole input\'s hash', () => {
  const bytes = randomBytes(64 * 1000 + 17)
  const first = new Sha256().update(bytes.subarray(0, 64 * 300))
  const state = first.state()
  assert.match(state, /^[0-9a-f]{64}$/)
  assert.equal(new Sha256().update(bytes.subarray(0, 65)).state(), null, 'only on a 64-byte block')
  const rest = Sha256.resume(state, 64 * 300).update(bytes.subarray(64 * 300))
  assert.equal(rest.hex(), sha(bytes))
  assert.throws(() => Sha256.resume(state, 65))
  assert.throws(() => Sha256.resume('x'.repeat(64), 64))
})

test('an upload by one member is downloaded byte for byte by another, with monotonic progress', async () => {
  const w = wire()
  const { a, b, ws } = await team({ fetch: w.fetch, files: { partConcurrency: 2 } })
  const bytes = randomBytes(3 * PART + 12345)
  const up = a.files.upload(ws.id, bytes, { name: 'report.bin', contentType: 'application/octet-stream' })
  const progress = []
  const states = []
  up.on('progress', (p) => progress.push(p))
  up.on('state', (s) => states.push(s))
  const file = await up.settled()
  assert.equal(file.size, bytes.length)
  assert.equal(file.sha256, sha(bytes))
  assert.equal(file.name, 'report.bin')
  assert.equal(up.deduplicated, false)
  assert.equal(w.puts.length, 4, 'four parts of 1 MiB at most')
  assert.equal(up.bytesOnWire, bytes.length)
  monotonic(progress, bytes.length)
  assert.ok(progress.length >= 3, `progress part by part: ${JSON.stringify(progress)}`)
  assert.deepEqual(states, ['hashing', 'running', 'done'])

  const down = b.files.download(file.id)
  const downProgress = []
  down.on('progress', (p) => downProgress.push(p))
  const { blob, file: meta } = await down.settled()
  assert.equal(meta.id, file.id)
  assert.ok(Buffer.from(await blob.arrayBuffer()).equals(bytes), 'byte for byte')
  monotonic(downProgress, bytes.length)
})

test('the same bytes again are a dedupe hit: no byte is sent', async () => {
  const w = wire()
  const bw = wire()
  const { a, b, ws } = await team({ fetch: w.fetch }, { fetch: bw.fetch })
  const bytes = randomBytes(200_000)
  const first = await a.files.upload(ws.id, bytes, { name: 'a.bin' }).settled()
  assert.equal(w.puts.length, 1, 'one PUT for a small file')
  // Bob uploads the same bytes into the same workspace under another name.
  const second = b.files.upload(ws.id, new Blob([bytes]), { name: 'copy.bin' })
  const progress = []
  second.on('progress', (p) => progress.push(p))
  const file = await second.settled()
  assert.equal(second.deduplicated, true)
  assert.equal(file.id, first.id)
  assert.equal(second.bytesOnWire, 0)
  assert.deepEqual(bw.puts, [], 'Bob sent nothing')
  assert.deepEqual(progress, [{ loaded: bytes.length, total: bytes.length }])
  const third = a.files.upload(ws.id, bytes)
  assert.equal((await third.settled()).id, first.id)
  assert.equal(w.puts.length, 1, 'still the one PUT of the first upload')
})

test('the queue runs at most `concurrency` transfers at once and finishes them all', async () => {
  const { a, ws } = await team({ files: { concurrency: 2 } })
  let most = 0
  const transfers = Array.from({ length: 6 }, () => a.files.upload(ws.id, randomBytes(300_000)))
  const sample = () => { most = Math.max(most, transfers.filter((t) => t.state === 'hashing' || t.state === 'running').length) }
  for (const t of transfers) { t.on('state', sample); t.on('progress', sample) }
  sample()
  assert.deepEqual(transfers.map((t) => t.state), ['queued', 'queued', 'queued', 'queued', 'queued', 'queued'])
  const files = await Promise.all(transfers.map((t) => t.settled()))
  assert.equal(new Set(files.map((f) => f.id)).size, 6)
  assert.equal(most, 2)
})

test('an interrupted multipart upload resumes without resending the parts already sent', async () => {
  const w = wire()
  const { a, b, ws } = await team({ fetch: w.fetch, files: { partConcurrency: 1, ...fast } })
  const bytes = randomBytes(4 * PART + 1)
  w.failAfter = 2
  const up = a.files.upload(ws.id, bytes)
  const progress = []
  up.on('progress', (p) => progress.push(p))
  const err = await up.settled().catch((e) => e)
  assert.ok(err instanceof TandemError, String(err))
  assert.equal(err.code, 'network')
  assert.equal(up.state, 'failed')
  assert.equal(w.sent.size, 2, 'two parts made it')
  assert.equal(up.loaded, 2 * PART)
  const failedUrl = w.puts.at(-1)
  assert.equal(w.puts.filter((u) => u === failedUrl).length, 3, 'the third part was tried 1 + 2 retries times')
  assert.deepEqual(Object.keys(up.checkpoint.done).map(Number), [1, 2])

  w.failAfter = Infinity
  up.resume()
  const file = await up.settled()
  assert.equal(file.sha256, sha(bytes))
  assert.equal(w.sent.size, 5)
  assert.ok([...w.sent.values()].every((n) => n === 1), 'every part sent successfully exactly once')
  monotonic(progress, bytes.length)
  const { blob } = await b.files.download(file.id).settled()
  assert.ok(Buffer.from(await blob.arrayBuffer()).equals(bytes))
})

test('a part whose request fails is retried after backoff delays and the upload completes', async () => {
  const w = wire()
  const { a, ws } = await team({ fetch: w.fetch, files: { partConcurrency: 1, retries: 3, backoff: { initialMs: 50, maxMs: 50 } } })
  const bytes = randomBytes(3 * PART)
  w.failNext = 2 // the second part fails twice, then goes through
  const started = performance.now()
  const file = await a.files.upload(ws.id, bytes).settled()
  assert.equal(file.sha256, sha(bytes))
  assert.equal(w.puts.length, 5, '3 parts + 2 failed attempts')
  assert.equal(w.puts[1], w.puts[2])
  assert.equal(w.puts[2], w.puts[3])
  assert.ok([...w.sent.values()].every((n) => n === 1))
  assert.ok(performance.now() - started >= 50, 'two backoff delays of 25–50 ms each')
})

test('pause() stops sending and resume() sends only the parts still missing', async () => {
  const w = wire()
  const { a, ws } = await team({ fetch: w.fetch, files: { partConcurrency: 1 } })
  const bytes = randomBytes(4 * PART)
  const up = a.files.upload(ws.id, bytes)
  const paused = new Promise((resolve) => {
    const off = up.on('progress', (p) => {
      if (p.loaded >= PART && up.state === 'running') { off(); up.pause(); resolve() }
    })
  })
  await paused
  assert.equal(up.state, 'paused')
  await new Promise((resolve) => setTimeout(resolve, 100))
  const sentWhilePaused = w.puts.length
  const done = Object.keys(up.checkpoint.done).length
  assert.ok(done >= 1 && done < 4, `parts acknowledged before the pause: ${done}`)
  await new Promise((resolve) => setTimeout(resolve, 200))
  assert.equal(w.puts.length, sentWhilePaused, 'nothing is sent while paused')
  up.resume()
  const file = await up.settled()
  assert.equal(file.sha256, sha(bytes))
  assert.ok([...w.sent.values()].every((n) => n === 1), 'no acknowledged part was sent again')
  assert.equal(w.sent.size, 4)
})

test('a checkpoint resumes the upload in a new session: control says which parts it holds', async () => {
  const w = wire()
  const { alice, a, ws } = await team({ fetch: w.fetch, files: { partConcurrency: 1, ...fast } })
  const bytes = randomBytes(3 * PART + 7)
  w.failAfter = 1
  const up = a.files.upload(ws.id, bytes)
  await up.settled().catch(() => {})
  assert.equal(up.state, 'failed')
  const checkpoint = JSON.parse(JSON.stringify(up.checkpoint)) // as if kept in localStorage
  const sentBefore = [...w.sent.keys()]
  assert.equal(sentBefore.length, 1)

  const w2 = wire()
  const later = clientFor(tandem, alice, { fetch: w2.fetch })
  const file = await later.files.upload(ws.id, bytes, { resume: checkpoint }).settled()
  assert.equal(file.sha256, sha(bytes))
  assert.equal(w2.puts.length, 3, 'only the three missing parts')
  const partOf = (url) => new URL(url).pathname
  assert.ok(!w2.puts.map(partOf).includes(partOf(sentBefore[0])), 'the part control holds is not sent again')
})

test('a download whose bytes differ from the file\'s sha256 is refused', async () => {
  const { a, b, ws } = await team()
  const bytes = randomBytes(150_000)
  const file = await a.files.upload(ws.id, bytes).settled()
  // Alter the stored bytes in the directory backend (same size, one byte flipped).
  const stored = findFile(tandem.filesDir, (p) => statSync(p).size === bytes.length && readFileSync(p).equals(bytes))
  assert.ok(stored, `the stored file under ${tandem.filesDir}`)
  const altered = Buffer.from(bytes)
  altered[1000] ^= 0xff
  writeFileSync(stored, altered)
  const down = b.files.download(file.id)
  const err = await down.settled().catch((e) => e)
  assert.ok(err instanceof TandemError, String(err))
  assert.equal(err.code, 'hash_mismatch')
  assert.equal(down.state, 'failed')
})

test('a message attachment is downloaded by another participant; an outsider gets 404', async () => {
  const { a, b, ws, bob } = await team()
  const project = await a.api.post('/workspaces/{id}/projects', { path: { id: ws.id }, body: { name: 'P' } })
  const conv = await a.api.post('/projects/{id}/conversations', { path: { id: project.id }, body: { title: 'C' } })
  await a.api.post('/conversations/{id}/participants', { path: { id: conv.id }, body: { userId: bob.id } })
  const bytes = randomBytes(50_000)
  const file = await a.files.upload(ws.id, bytes, { name: 'photo.jpg', contentType: 'image/jpeg' }).settled()
  const message = await a.api.post('/conversations/{id}/messages', { path: { id: conv.id }, body: { content: 'see attached', attachments: [file.id] } })
  assert.equal(message.attachments[0].fileId, file.id)
  assert.equal(message.attachments[0].name, 'photo.jpg')
  const listed = await b.api.get('/conversations/{id}/messages', { path: { id: conv.id } })
  const got = listed.items.find((m) => m.id === message.id)
  assert.ok(got, 'Bob reads the message')
  assert.deepEqual(got.attachments.map((x) => x.fileId), [file.id])
  const { blob } = await b.files.download(file.id).settled()
  assert.ok(Buffer.from(await blob.arrayBuffer()).equals(bytes))

  const outsider = clientFor(tandem, await signup(tandem, 'Eve'))
  const err = await outsider.files.download(file.id).settled().catch((e) => e)
  assert.equal(err.status, 404)
})

function findFile (dir, pred) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name)
    if (entry.isDirectory()) {
      const found = findFile(p, pred)
      if (found) return found
    } else if (entry.isFile() && pred(p)) return p
  }
  return null
}
