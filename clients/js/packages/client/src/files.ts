// Files: uploads and downloads through control's signed URLs.
//
// Upload: hash the bytes (sha256, WebCrypto), ask control for an upload intent
// (`POST /workspaces/{id}/files/uploads`); `status: "exists"` is a dedupe hit
// and nothing is sent; else send the bytes to the intent's part URLs (one PUT,
// or parts in parallel), each retried with backoff, then
// `POST /files/uploads/{uploadId}/complete`, unless the one PUT answered the
// file itself (a small file on S3 sent through control: its PUT completes
// it). A failed or paused multipart
// upload resumes with the parts that are still missing only.
// Download: `GET /files/{id}` (size, sha256), `GET /files/{id}/url` (a
// short-lived signed URL), then the bytes from that URL, hashed as they arrive
// and refused when the hash differs from the file's.
// Every transfer goes through one queue with a bounded number running at once.
import { Backoff, type BackoffOptions } from './backoff.js'
import { Emitter } from './emitter.js'
import { TandemError, errorFromResponse, networkError } from './errors.js'
import type { HttpClient, ResponseOf, BodyOf } from './http.js'
import { Sha256, sha256Blob, sha256Bytes } from './sha256.js'

/** A file's metadata, as control's OpenAPI document describes it. */
export type FileInfo = ResponseOf<'/files/{id}', 'get'>
/** The answer to an upload intent: `{status: "exists", file}` or `{status: "pending", uploadId, parts, …}`. */
export type UploadIntent = ResponseOf<'/workspaces/{id}/files/uploads', 'post'>
export type UploadIntentBody = BodyOf<'/workspaces/{id}/files/uploads', 'post'>
type PendingIntent = Extract<UploadIntent, { status: 'pending' }>
/** One URL to send a part's bytes to (`method`, with `headers`, the bytes at `offset`, `size` of them). */
export type UploadPart = PendingIntent['parts'][number]

export type TransferKind = 'upload' | 'download'
/**
 * `queued` (waiting for a slot), `hashing`, `running`, then `done`; or `paused` (by `pause()`),
 * `failed` (`error` says why; `resume()` tries again) or `canceled` (final).
 */
export type TransferState = 'queued' | 'hashing' | 'running' | 'paused' | 'failed' | 'done' | 'canceled'

export interface TransferProgress {
  /** Bytes of the file done: sent (upload) or received (download). Never decreases; equals `total` when done. */
  loaded: number
  total: number
}

export interface TransferEvents {
  progress: [progress: TransferProgress]
  state: [state: TransferState]
}

/** What a multipart upload needs to resume in another session (e.g. kept in localStorage). */
export interface UploadCheckpoint {
  workspaceId: string
  uploadId: string
  sha256: string
  size: number
  name: string
  contentType: string
  partSize: number
  parts: UploadPart[]
  expiresAt: string | number | null
  /** Parts that control has acknowledged: `partNumber` → ETag (empty string when the backend gives none). */
  done: Record<number, string>
}

export interface FilesOptions {
  /** Transfers running at once; the others wait in the queue (default 3). */
  concurrency?: number
  /** Parts of one multipart upload sent at once (default 3). */
  partConcurrency?: number
  /** Attempts per request after the first, for network errors, 408, 429 and 5xx (default 5). */
  retries?: number
  /** Delays between attempts (default 250 ms doubling to 5 s, with jitter). */
  backoff?: BackoffOptions
  /** Bytes up to which WebCrypto hashes in one call (default 64 MiB); larger files are hashed incrementally. */
  webCryptoLimit?: number
  /**
   * Use XMLHttpRequest for part uploads when it exists (browsers), for byte-level upload progress
   * (default true). fetch gives no upload progress: progress then advances part by part.
   */
  xhr?: boolean
}

export interface UploadOptions {
  /** File name (default: the File's name, else `file`). */
  name?: string
  /** MIME type (default: the Blob's type, else `application/octet-stream`). */
  contentType?: string
  /** Resume an upload started earlier (the `checkpoint` of a failed or paused transfer). */
  resume?: UploadCheckpoint
}

export interface DownloadOptions {
  /** The expected sha256 (hex); default: the file's, from `GET /files/{id}`. */
  sha256?: string
}

export interface DownloadResult {
  file: FileInfo
  /** The bytes, their sha256 checked. */
  blob: Blob
}

interface Runtime {
  http: HttpClient
  fetch: typeof fetch
  options: Required<Omit<FilesOptions, 'backoff'>> & { backoff: BackoffOptions }
}

const PROGRESS_GRANULE = 64 * 1024

/** One upload or download in the queue: events, state, `pause()`, `resume()`, `cancel()`, and `result`. */
export abstract class Transfer<R> extends Emitter<TransferEvents> {
  abstract readonly kind: TransferKind
  state: TransferState = 'queued'
  /** Why it failed (a TandemError), or null. */
  error: unknown = null
  loaded = 0
  total: number
  /** Bytes actually put on the wire for this transfer (part bodies sent, content received), retries included. */
  bytesOnWire = 0
  /** Settles when the transfer is done (or rejects once it is canceled); failures wait for `resume()`. */
  readonly result: Promise<R>
  private settle!: { resolve: (r: R) => void, reject: (e: unknown) => void }
  private abort: AbortController | null = null
  private lastEmitted = -1
  private readonly failures = new Set<(e: unknown) => void>()

  constructor (protected readonly queue: TransferQueue, total: number) {
    super()
    this.total = total
    this.result = new Promise<R>((resolve, reject) => { this.settle = { resolve, reject } })
    // Callers that only watch events must not see unhandled rejections.
    this.result.catch(() => {})
  }

  /** Resolves with the result, or rejects with the error of the first failure (instead of waiting for `resume()`). */
  async settled (): Promise<R> {
    if (this.state === 'done') return await this.result
    if (this.state === 'failed') throw this.error
    return await new Promise<R>((resolve, reject) => {
      this.result.then(resolve, reject)
      this.failures.add(reject)
    })
  }

  /** Stops sending (in-flight requests are aborted); parts already acknowledged are kept. */
  pause (): void {
    if (this.state === 'done' || this.state === 'canceled' || this.state === 'failed' || this.state === 'paused') return
    this.abort?.abort()
    this.queue.dequeue(this)
    this.setState('paused')
  }

  /** Starts again after `pause()` or a failure, from where it stopped. */
  resume (): void {
    if (this.state !== 'paused' && this.state !== 'failed') return
    this.error = null
    this.setState('queued')
    this.queue.enqueue(this)
  }

  /** Stops for good; `result` rejects with code `canceled`. */
  cancel (): void {
    if (this.state === 'done' || this.state === 'canceled') return
    this.abort?.abort()
    this.queue.dequeue(this)
    this.setState('canceled')
    this.settle.reject(new TandemError({ status: 0, code: 'canceled', message: 'transfer canceled' }))
  }

  /** Called by the queue when a slot is free. */
  async start (): Promise<void> {
    const abort = new AbortController()
    this.abort = abort
    try {
      const r = await this.run(abort.signal)
      if (abort.signal.aborted) return
      this.progress(this.total, true)
      this.setState('done')
      this.settle.resolve(r)
    } catch (err) {
      if (abort.signal.aborted) return // paused or canceled: not a failure
      this.error = err
      this.setState('failed')
      for (const reject of this.failures) reject(err)
      this.failures.clear()
    } finally {
      if (this.abort === abort) this.abort = null
    }
  }

  protected abstract run (signal: AbortSignal): Promise<R>

  protected setState (state: TransferState): void {
    if (this.state === state) return
    this.state = state
    this.emit('state', state)
  }

  /** Reports progress; never backwards, and at most every 64 KiB unless `force`. */
  protected progress (loaded: number, force = false): void {
    const value = Math.min(this.total, Math.max(this.loaded, loaded))
    this.loaded = value
    if (value === this.lastEmitted) return
    if (!force && value !== this.total && value - this.lastEmitted < PROGRESS_GRANULE) return
    this.lastEmitted = value
    this.emit('progress', { loaded: value, total: this.total })
  }

  /** Runs `attempt` with retries and backoff for retryable failures (network, 408, 429, 5xx). */
  protected async retrying<T> (rt: Runtime, signal: AbortSignal, attempt: () => Promise<T>): Promise<T> {
    const backoff = new Backoff({ initialMs: 250, maxMs: 5000, ...rt.options.backoff })
    for (;;) {
      try {
        return await attempt()
      } catch (err) {
        if (signal.aborted) throw err
        // Bytes that do not match are not a network hiccup: the stored copy is wrong; refuse at once.
        const retryable = err instanceof TandemError && err.retryable && err.code !== 'hash_mismatch'
        if (!retryable || backoff.attempts >= rt.options.retries) throw err
        const wait = err instanceof TandemError && err.retryAfter !== undefined ? Math.max(err.retryAfter * 1000, 0) : backoff.next()
        if (err instanceof TandemError && err.retryAfter !== undefined) backoff.next()
        await sleep(wait, signal)
      }
    }
  }
}

/** An upload: `result` is the file's metadata; `deduplicated` tells whether bytes had to be sent at all. */
export class UploadTransfer extends Transfer<FileInfo> {
  readonly kind = 'upload'
  /** True when control already had these bytes in the workspace: nothing was sent. */
  deduplicated = false
  /** The state to resume this upload elsewhere (after the intent, while parts are missing); null before and after. */
  checkpoint: UploadCheckpoint | null
  sha256: string | null
  readonly name: string
  readonly contentType: string

  private readonly blob: Blob | Uint8Array
  private readonly size: number
  /** SHA-256 states of the file's bytes before these offsets (see `stateAt`). */
  private readonly states = new Map<number, string>()
  private stateChain: Promise<unknown> = Promise.resolve()
  /** The file, when the one PUT of a small upload answered it (nothing left to complete). */
  private madeByPut: FileInfo | null = null

  /** `data`: a Blob (a File), or bytes in memory, hashed and sliced in place (no copy). */
  constructor (queue: TransferQueue, private readonly rt: Runtime, readonly workspaceId: string, data: Blob | Uint8Array, options: UploadOptions) {
    super(queue, data instanceof Blob ? data.size : data.length)
    this.blob = data
    this.size = this.total
    const blobName = data instanceof Blob ? (data as { name?: unknown }).name : undefined
    const blobType = data instanceof Blob ? data.type : ''
    this.name = options.name ?? options.resume?.name ?? (typeof blobName === 'string' && blobName !== '' ? blobName : 'file')
    this.contentType = options.contentType ?? options.resume?.contentType ?? (blobType !== '' ? blobType : 'application/octet-stream')
    this.checkpoint = options.resume ?? null
    this.sha256 = options.resume?.sha256 ?? null
    if (options.resume !== undefined && options.resume.size !== this.size) {
      throw new TypeError(`resume: the checkpoint is for ${options.resume.size} bytes, the data has ${this.size}`)
    }
    this.refresh = options.resume !== undefined
  }

  /** True when the checkpoint came from elsewhere: ask control what it has received, for fresh URLs. */
  private refresh: boolean

  /**
   * `GET /files/uploads/{uploadId}`: fresh part URLs and the parts control already holds. Null when the
   * upload is gone (expired, completed elsewhere): the upload starts over with a new intent.
   */
  private async refreshed (cp: UploadCheckpoint, signal: AbortSignal): Promise<UploadCheckpoint | null> {
    const uploadId = cp.uploadId
    let answer: UploadIntent
    try {
      answer = await this.retrying(this.rt, signal, async () => await this.rt.http.get('/files/uploads/{uploadId}', { path: { uploadId }, signal }))
    } catch (err) {
      if (err instanceof TandemError && (err.status === 404 || err.status === 410)) return null
      throw err
    }
    this.refresh = false
    if (answer.status !== 'pending') return null
    const pending = answer
    const done: Record<number, string> = {}
    for (const n of pending.receivedParts ?? []) done[n] = cp.done[n] ?? ''
    return { ...cp, parts: pending.parts, expiresAt: pending.expiresAt, partSize: partSizeOf(pending, cp.size), done }
  }

  protected async run (signal: AbortSignal): Promise<FileInfo> {
    const rt = this.rt
    if (this.sha256 === null) {
      this.setState('hashing')
      const hashOptions = { webCryptoLimit: rt.options.webCryptoLimit, signal, states: this.states }
      this.sha256 = this.blob instanceof Blob ? await sha256Blob(this.blob, hashOptions) : await sha256Bytes(this.blob, hashOptions)
    }
    signal.throwIfAborted()
    this.setState('running')
    let cp = this.checkpoint
    if (cp !== null && (this.refresh || expired(cp.expiresAt))) cp = await this.refreshed(cp, signal)
    if (cp === null) {
      const sha256 = this.sha256
      const body = { name: this.name, size: this.size, contentType: this.contentType, sha256 } as UploadIntentBody
      const intent = await this.retrying(rt, signal, async () =>
        await rt.http.post('/workspaces/{id}/files/uploads', { path: { id: this.workspaceId }, body, signal }))
      if (intent.status === 'exists') {
        this.deduplicated = true
        this.checkpoint = null
        return intent.file
      }
      const pending = intent
      cp = {
        workspaceId: this.workspaceId,
        uploadId: pending.uploadId,
        sha256,
        size: this.size,
        name: this.name,
        contentType: this.contentType,
        partSize: partSizeOf(pending, this.size),
        parts: pending.parts,
        expiresAt: pending.expiresAt,
        done: {}
      }
      this.checkpoint = cp
    }
    this.madeByPut = null
    await this.sendParts(cp, signal)
    signal.throwIfAborted()
    if (this.madeByPut !== null && cp.parts.length === 1) {
      this.checkpoint = null
      return this.madeByPut
    }
    const parts = cp.parts.map((p) => {
      const etag = cp.done[p.partNumber]
      return etag === undefined || etag === '' ? { partNumber: p.partNumber } : { partNumber: p.partNumber, etag }
    })
    const uploadId = cp.uploadId
    const completed = await this.retrying(rt, signal, async () =>
      await rt.http.post('/files/uploads/{uploadId}/complete', { path: { uploadId }, body: { parts } as BodyOf<'/files/uploads/{uploadId}/complete', 'post'>, signal }))
    this.checkpoint = null
    return completed.file
  }

  /**
   * The SHA-256 state of the bytes before `offset`, for a part control hashes as it passes
   * (`sha256State`): from the nearest state known (kept while hashing, or computed before). One at a
   * time, so parts sent in order cost one pass over the file between them.
   */
  private async stateAt (offset: number, signal: AbortSignal): Promise<string> {
    const next = this.stateChain.then(async () => {
      const known = this.states.get(offset)
      if (known !== undefined) return known
      let from = 0
      for (const at of this.states.keys()) if (at <= offset && at > from) from = at
      const kept = this.states.get(from)
      const hash = from === 0 || kept === undefined ? new Sha256() : Sha256.resume(kept, from)
      if (kept === undefined) from = 0
      for (let at = from; at < offset; at += STATE_STEP) {
        signal.throwIfAborted()
        const end = Math.min(offset, at + STATE_STEP)
        hash.update(this.blob instanceof Blob ? new Uint8Array(await this.blob.slice(at, end).arrayBuffer()) : this.blob.subarray(at, end))
      }
      const state = hash.state()
      if (state === null) throw new Error(`no SHA-256 state at offset ${offset}: not on a 64-byte block`)
      this.states.set(offset, state)
      return state
    })
    this.stateChain = next.catch(() => undefined)
    return await next
  }

  private rangeOf (cp: UploadCheckpoint, index: number): [number, number] {
    const part = cp.parts[index]!
    if (typeof part.offset === 'number' && typeof part.size === 'number') return [part.offset, part.offset + part.size]
    if (cp.parts.length === 1) return [0, cp.size]
    const start = index * cp.partSize
    return [start, Math.min(cp.size, start + cp.partSize)]
  }

  private async sendParts (cp: UploadCheckpoint, signal: AbortSignal): Promise<void> {
    const pending = cp.parts.map((p, i) => ({ p, i })).filter(({ p }) => cp.done[p.partNumber] === undefined)
    const inFlight = new Map<number, number>()
    let confirmed = 0
    cp.parts.forEach((p, i) => {
      if (cp.done[p.partNumber] !== undefined) { const [s, e] = this.rangeOf(cp, i); confirmed += e - s }
    })
    const report = (): void => {
      let sum = confirmed
      for (const v of inFlight.values()) sum += v
      this.progress(sum)
    }
    report()
    const worker = async (): Promise<void> => {
      for (;;) {
        const next = pending.shift()
        if (next === undefined) return
        signal.throwIfAborted()
        const [start, end] = this.rangeOf(cp, next.i)
        const body = this.blob instanceof Blob ? this.blob.slice(start, end) : this.blob.subarray(start, end)
        const claim = next.p.sha256State === true ? await this.stateAt(start, signal) : undefined
        const sent = await this.retrying(this.rt, signal, async () => {
          inFlight.set(next.p.partNumber, 0)
          try {
            return await sendBody(this.rt, next.p, body, signal, (n) => { inFlight.set(next.p.partNumber, n); report() }, (n) => { this.bytesOnWire += n }, claim)
          } finally {
            inFlight.delete(next.p.partNumber)
          }
        })
        cp.done[next.p.partNumber] = sent.etag
        if (sent.file !== undefined) this.madeByPut = sent.file
        confirmed += end - start
        report()
      }
    }
    const workers = Math.max(1, Math.min(this.rt.options.partConcurrency, pending.length))
    const results = await Promise.allSettled(Array.from({ length: workers }, async () => await worker()))
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed !== undefined) throw failed.reason
  }
}

/** A download: `result` is `{file, blob}`, the blob's sha256 checked against the file's. */
export class DownloadTransfer extends Transfer<DownloadResult> {
  readonly kind = 'download'
  file: FileInfo | null = null

  constructor (queue: TransferQueue, private readonly rt: Runtime, readonly fileId: string, private readonly options: DownloadOptions) {
    super(queue, 0)
  }

  protected async run (signal: AbortSignal): Promise<DownloadResult> {
    const rt = this.rt
    const id = this.fileId
    this.setState('running')
    const file = this.file ?? await this.retrying(rt, signal, async () => await rt.http.get('/files/{id}', { path: { id }, signal }))
    this.file = file
    this.total = file.size
    const expected = (this.options.sha256 ?? file.sha256).toLowerCase()
    return await this.retrying(rt, signal, async () => {
      // A fresh signed URL per attempt (they live minutes), fetched without the session token: the
      // URL is the credential, and the token never travels to the store (S3 on another origin).
      const signed = await rt.http.get('/files/{id}/url', { path: { id }, signal })
      let res: Response
      try {
        res = await rt.fetch(signed.url, { signal })
      } catch (err) {
        throw networkError(err)
      }
      if (!res.ok) throw await errorFromResponse(res)
      if (res.body === null) throw new TandemError({ status: res.status, code: 'bad_response', message: 'download without a body' })
      const reader = res.body.getReader()
      // Up to the WebCrypto limit the bytes land in one buffer, hashed at the end in one call;
      // above it they are kept as chunks and hashed incrementally as they arrive.
      const whole = file.size <= rt.options.webCryptoLimit ? new Uint8Array(file.size) : null
      const chunks: Uint8Array[] = []
      const hash = whole === null ? new Sha256() : null
      let received = 0
      try {
        for (;;) {
          const { done, value } = await reader.read()
          if (done) break
          this.bytesOnWire += value.length
          if (received + value.length > file.size) throw hashMismatch(id, `more than the file's ${file.size} bytes`)
          if (whole !== null) whole.set(value, received)
          else { chunks.push(value); hash?.update(value) }
          received += value.length
          this.progress(received)
        }
      } catch (err) {
        if (err instanceof TandemError) throw err
        throw networkError(err)
      }
      if (received !== file.size) throw hashMismatch(id, `${received} bytes instead of ${file.size}`)
      const got = whole !== null ? await sha256Bytes(whole, { webCryptoLimit: rt.options.webCryptoLimit }) : hash!.hex()
      const blob = new Blob((whole !== null ? [whole] : chunks) as BlobPart[], { type: file.contentType })
      if (got !== expected) throw hashMismatch(id, `sha256 ${got}, expected ${expected}`)
      return { file, blob }
    })
  }
}

function hashMismatch (id: string, detail: string): TandemError {
  return new TandemError({ status: 0, code: 'hash_mismatch', message: `file ${id}: the downloaded bytes do not match (${detail}); refused` })
}

/** What the queue runs: a transfer. */
export interface Startable { start: () => Promise<void> }

/** The queue: at most `concurrency` transfers run at once, the rest start in order as slots free up. */
export class TransferQueue {
  private readonly waiting: Startable[] = []
  private readonly running = new Set<Startable>()

  constructor (private readonly concurrency: number) {}

  /** Transfers running now. */
  get active (): number { return this.running.size }

  /** Queues `t`; it starts on a later microtask, so listeners added right after `upload()` see every state. */
  enqueue (t: Startable): void {
    if (!this.waiting.includes(t)) this.waiting.push(t)
    queueMicrotask(() => this.pump())
  }

  dequeue (t: Startable): void {
    const i = this.waiting.indexOf(t)
    if (i >= 0) this.waiting.splice(i, 1)
  }

  private pump (): void {
    while (this.running.size < this.concurrency) {
      // A transfer resumed while its previous run is still unwinding waits for that run to end.
      const i = this.waiting.findIndex((w) => !this.running.has(w))
      if (i < 0) return
      const t = this.waiting.splice(i, 1)[0]!
      this.running.add(t)
      void t.start().finally(() => {
        this.running.delete(t)
        this.pump()
      })
    }
  }
}

/** `tandem.files`: uploads, downloads, and the queue they share. */
export class FilesClient {
  readonly queue: TransferQueue
  private readonly rt: Runtime

  constructor (http: HttpClient, fetchImpl: typeof fetch, options: FilesOptions = {}) {
    this.rt = {
      http,
      fetch: fetchImpl,
      options: {
        concurrency: Math.max(1, options.concurrency ?? 3),
        partConcurrency: Math.max(1, options.partConcurrency ?? 3),
        retries: Math.max(0, options.retries ?? 5),
        webCryptoLimit: options.webCryptoLimit ?? 64 * 1024 * 1024,
        xhr: options.xhr ?? true,
        backoff: options.backoff ?? {}
      }
    }
    this.queue = new TransferQueue(this.rt.options.concurrency)
  }

  /** Queues an upload of `data` into the workspace; `await transfer.settled()` for the file's metadata. */
  upload (workspaceId: string, data: Blob | ArrayBuffer | Uint8Array, options: UploadOptions = {}): UploadTransfer {
    const source = data instanceof Blob || data instanceof Uint8Array ? data : new Uint8Array(data)
    const t = new UploadTransfer(this.queue, this.rt, workspaceId, source, options)
    this.queue.enqueue(t)
    return t
  }

  /** Queues a download of a file; `await transfer.settled()` for `{file, blob}` (its sha256 checked). */
  download (fileId: string, options: DownloadOptions = {}): DownloadTransfer {
    const t = new DownloadTransfer(this.queue, this.rt, fileId, options)
    this.queue.enqueue(t)
    return t
  }

  /** A file's metadata. */
  async get (fileId: string): Promise<FileInfo> {
    return await this.rt.http.get('/files/{id}', { path: { id: fileId } })
  }

  /** Deletes a file (its blob is collected once nothing refers to it). */
  async delete (fileId: string): Promise<void> {
    await this.rt.http.delete('/files/{id}', { path: { id: fileId } })
  }
}

function partSizeOf (intent: PendingIntent, size: number): number {
  const explicit = intent.partSize
  if (typeof explicit === 'number' && explicit > 0) return explicit
  const n = Math.max(1, intent.parts.length)
  return Math.ceil(size / n)
}

function expired (expiresAt: string | number | null): boolean {
  if (expiresAt === null) return false
  const at = typeof expiresAt === 'number' ? expiresAt : Date.parse(expiresAt)
  return Number.isFinite(at) && at - 30_000 < Date.now()
}

async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** Bytes hashed at a time when computing a part's SHA-256 state. */
const STATE_STEP = 4 * 1024 * 1024

/** What a part's PUT answered: its ETag, and the file when the PUT completed the upload. */
interface Sent { etag: string, file?: FileInfo }

/** `{file}` in a PUT's answer (a small S3 upload through control is completed by its PUT); else undefined. */
function madeFile (text: string, contentType: string | null): FileInfo | undefined {
  if (contentType === null || !contentType.includes('json') || text === '') return undefined
  try {
    const body = JSON.parse(text) as { file?: unknown }
    const file = body.file as FileInfo | undefined
    return typeof file === 'object' && file !== null && typeof file.id === 'string' ? file : undefined
  } catch {
    return undefined
  }
}

/** Sends one part's bytes to its signed URL (no Authorization: the URL is the credential); answers its ETag (and the file, if the PUT completed the upload). */
async function sendBody (rt: Runtime, part: UploadPart, body: Blob | Uint8Array, signal: AbortSignal, onProgress: (sent: number) => void, onWire: (n: number) => void, sha256State?: string): Promise<Sent> {
  const headers: Record<string, string> = { ...(part.headers as Record<string, string> | undefined) }
  if (sha256State !== undefined) headers['tandem-sha256-state'] = sha256State
  const method = (part.method ?? 'PUT').toUpperCase()
  const size = body instanceof Blob ? body.size : body.length
  if (rt.options.xhr && typeof XMLHttpRequest !== 'undefined') return await sendXhr(part.url, method, headers, body, size, signal, onProgress, onWire)
  let res: Response
  try {
    onWire(size)
    res = await rt.fetch(part.url, { method, headers, body: body as BodyInit, signal })
  } catch (err) {
    throw networkError(err)
  }
  if (!res.ok) throw await errorFromResponse(res)
  const text = await res.text().catch(() => '')
  onProgress(size)
  return { etag: res.headers.get('etag') ?? '', file: madeFile(text, res.headers.get('content-type')) }
}

async function sendXhr (url: string, method: string, headers: Record<string, string>, body: Blob | Uint8Array, size: number, signal: AbortSignal, onProgress: (sent: number) => void, onWire: (n: number) => void): Promise<Sent> {
  return await new Promise<Sent>((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open(method, url)
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v)
    let sent = 0
    xhr.upload.onprogress = (e) => { onWire(e.loaded - sent); sent = e.loaded; onProgress(e.loaded) }
    const onAbort = (): void => xhr.abort()
    signal.addEventListener('abort', onAbort, { once: true })
    xhr.onloadend = () => {
      signal.removeEventListener('abort', onAbort)
      if (signal.aborted) { reject(signal.reason); return }
      if (xhr.status === 0) { reject(networkError(new Error('upload failed'))); return }
      const res = new Response(xhr.status === 204 ? null : xhr.responseText, { status: xhr.status, headers: parseHeaders(xhr.getAllResponseHeaders()) })
      if (!res.ok) { void errorFromResponse(res).then(reject, reject); return }
      onProgress(size)
      resolve({ etag: xhr.getResponseHeader('etag') ?? '', file: madeFile(xhr.responseText, xhr.getResponseHeader('content-type')) })
    }
    xhr.send(body as XMLHttpRequestBodyInit)
  })
}

function parseHeaders (raw: string): Headers {
  const h = new Headers()
  for (const line of raw.trim().split(/[\r\n]+/)) {
    const i = line.indexOf(':')
    if (i > 0) {
      try { h.append(line.slice(0, i).trim(), line.slice(i + 1).trim()) } catch { /* skip a malformed header */ }
    }
  }
  return h
}
