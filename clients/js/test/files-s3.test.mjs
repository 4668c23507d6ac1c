// @tandem/client files against control on the S3 backend (a real SeaweedFS:
// scripts/test sets TANDEM_TEST_S3_URL=http://KEY:SECRET@HOST:PORT/BUCKET).
// A small file's one PUT goes to control, which passes the bytes on to the
// store and completes the upload in that request: the client sends no
// completion. A larger one goes to the store's presigned URL and is completed.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { startTandem, signup, clientFor } from './harness.mjs'

const s3 = process.env.TANDEM_TEST_S3_URL ? new URL(process.env.TANDEM_TEST_S3_URL) : null
const skip = s3 === null ? 'TANDEM_TEST_S3_URL is not set (scripts/test sets it)' : false
const LIMIT = 100_000
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
      TANDEM_S3_THROUGH_CONTROL_BYTES: String(LIMIT)
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
