// Throughput of tandem.files against `tandem dev` (directory backend), beside
// the same transfers done with bare fetch (no hashing, no queue): what the
// client's hashing and bookkeeping cost. Also the two SHA-256 paths.
//   node scripts/bench-files.mjs [MB=64]   (TANDEM_BIN: the binary; a release build for real figures)
import { randomBytes } from 'node:crypto'
import { Sha256, sha256Bytes } from '@tandem/client'
import { startTandem, signup, clientFor } from '../test/harness.mjs'

const mb = Number(process.argv[2] ?? 64)
const bytes = randomBytes(mb * 1024 * 1024)
const rate = (ms) => `${(mb / (ms / 1000)).toFixed(0)} MB/s`
const time = async (fn) => { const t = performance.now(); await fn(); return performance.now() - t }

console.log(`${mb} MB, ${process.env.TANDEM_BIN ?? 'target/debug/tandem'}`)
console.log('sha256 WebCrypto   ', rate(await time(() => sha256Bytes(bytes))))
console.log('sha256 incremental ', rate(await time(() => new Sha256().update(bytes).hex())))

const tandem = await startTandem()
try {
  const user = await signup(tandem, 'Bench')
  const client = clientFor(tandem, user)
  const ws = (await client.api.get('/auth/session')).workspaces.find((w) => w.type === 'personal')
  let file
  console.log('client upload      ', rate(await time(async () => { file = await client.files.upload(ws.id, bytes).settled() })), '(hash + intent + parts + complete)')
  console.log('client download    ', rate(await time(() => client.files.download(file.id).settled())), '(metadata + URL + bytes + hash check)')

  // The same with bare fetch: other bytes (no dedupe hit), the hash known in advance.
  const other = randomBytes(bytes.length)
  const sha256 = await sha256Bytes(other)
  const intent = await client.api.post('/workspaces/{id}/files/uploads', { path: { id: ws.id }, body: { name: 'raw', size: other.length, contentType: 'application/octet-stream', sha256 } })
  let done
  const put = await time(async () => {
    await Promise.all(intent.parts.map(async (p) => {
      const res = await fetch(p.url, { method: p.method, headers: p.headers, body: other.subarray(p.offset, p.offset + p.size) })
      if (!res.ok) throw new Error(`PUT ${res.status}`)
      await res.arrayBuffer()
    }))
    done = await client.api.post('/files/uploads/{uploadId}/complete', { path: { uploadId: intent.uploadId }, body: {} })
  })
  console.log('bare fetch PUTs    ', rate(put), `(${intent.parts.length} part(s) at once, + complete)`)
  const { url } = await client.api.get('/files/{id}/url', { path: { id: done.file.id } })
  console.log('bare fetch GET     ', rate(await time(async () => { await (await fetch(url)).arrayBuffer() })))
} finally {
  await tandem.stop()
}
