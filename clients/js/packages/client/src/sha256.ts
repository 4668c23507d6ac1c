// SHA-256, hex-encoded. WebCrypto (`crypto.subtle.digest`) is fast but takes
// the whole input at once, so it is used for inputs up to a limit; larger
// inputs (and pages without WebCrypto: plain http on a host that is not
// localhost) go through the incremental implementation below, a slice at a
// time, so a multi-gigabyte file is never held in memory.

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
])

/** Incremental SHA-256: `update()` with pieces in order, then `hex()`. */
export class Sha256 {
  private readonly h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19])
  private readonly w = new Uint32Array(64)
  private readonly block = new Uint8Array(64)
  private blockLen = 0
  private bytes = 0
  private finished = false

  /**
   * Continues from the state of the first `bytes` bytes of an input (`state` as {@link Sha256.state}
   * gave it; `bytes` a multiple of 64).
   */
  static resume (state: string, bytes: number): Sha256 {
    if (!/^[0-9a-f]{64}$/.test(state) || bytes % 64 !== 0) throw new Error('Sha256.resume: not a state at a 64-byte block')
    const h = new Sha256()
    for (let i = 0; i < 8; i++) h.h[i] = parseInt(state.slice(i * 8, i * 8 + 8), 16)
    h.bytes = bytes
    return h
  }

  /**
   * The state after the bytes so far (64 hex digits: the eight words, big-endian), when they are a
   * whole number of 64-byte blocks; else null. Control hashes a part sent through it from the state
   * at the part's offset (`tandem-sha256-state`), so it need not read the whole file back.
   */
  state (): string | null {
    if (this.finished || this.blockLen !== 0) return null
    let out = ''
    for (const word of this.h) out += word.toString(16).padStart(8, '0')
    return out
  }

  update (data: Uint8Array): this {
    if (this.finished) throw new Error('Sha256: update after hex()')
    this.bytes += data.length
    let i = 0
    if (this.blockLen > 0) {
      const take = Math.min(64 - this.blockLen, data.length)
      this.block.set(data.subarray(0, take), this.blockLen)
      this.blockLen += take
      i = take
      if (this.blockLen < 64) return this
      this.compress(this.block, 0)
      this.blockLen = 0
    }
    for (; i + 64 <= data.length; i += 64) this.compress(data, i)
    if (i < data.length) {
      this.block.set(data.subarray(i), 0)
      this.blockLen = data.length - i
    }
    return this
  }

  hex (): string {
    if (!this.finished) {
      const bits = this.bytes * 8
      const tail = new Uint8Array(this.blockLen < 56 ? 64 : 128)
      tail.set(this.block.subarray(0, this.blockLen))
      tail[this.blockLen] = 0x80
      const view = new DataView(tail.buffer)
      view.setUint32(tail.length - 8, Math.floor(bits / 0x100000000))
      view.setUint32(tail.length - 4, bits >>> 0)
      for (let i = 0; i < tail.length; i += 64) this.compress(tail, i)
      this.finished = true
    }
    let out = ''
    for (const word of this.h) out += word.toString(16).padStart(8, '0')
    return out
  }

  private compress (d: Uint8Array, o: number): void {
    const w = this.w
    for (let t = 0; t < 16; t++) {
      const j = o + t * 4
      w[t] = ((d[j]! << 24) | (d[j + 1]! << 16) | (d[j + 2]! << 8) | d[j + 3]!) >>> 0
    }
    for (let t = 16; t < 64; t++) {
      const a = w[t - 15]!
      const b = w[t - 2]!
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3)
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10)
      w[t] = (w[t - 16]! + s0 + w[t - 7]! + s1) >>> 0
    }
    const h = this.h
    let a = h[0]!; let b = h[1]!; let c = h[2]!; let dd = h[3]!
    let e = h[4]!; let f = h[5]!; let g = h[6]!; let hh = h[7]!
    for (let t = 0; t < 64; t++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))
      const ch = (e & f) ^ (~e & g)
      const t1 = (hh + S1 + ch + K[t]! + w[t]!) | 0
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))
      const maj = (a & b) ^ (a & c) ^ (b & c)
      const t2 = (S0 + maj) | 0
      hh = g; g = f; f = e; e = (dd + t1) | 0
      dd = c; c = b; b = a; a = (t1 + t2) | 0
    }
    h[0] = (h[0]! + a) | 0; h[1] = (h[1]! + b) | 0; h[2] = (h[2]! + c) | 0; h[3] = (h[3]! + dd) | 0
    h[4] = (h[4]! + e) | 0; h[5] = (h[5]! + f) | 0; h[6] = (h[6]! + g) | 0; h[7] = (h[7]! + hh) | 0
  }
}

export interface HashOptions {
  /** Inputs up to this many bytes are hashed by WebCrypto in one call (default 64 MiB); larger ones incrementally. */
  webCryptoLimit?: number
  /** Slice size for incremental hashing (default 4 MiB). */
  chunkSize?: number
  /** Bytes hashed so far, after each slice. */
  onProgress?: (hashed: number) => void
  /** When hashed incrementally: the SHA-256 state at each slice's offset, recorded here. */
  states?: Map<number, string>
  signal?: AbortSignal
}

function subtle (): SubtleCrypto | undefined {
  return (globalThis.crypto as Crypto | undefined)?.subtle
}

function toHex (buf: ArrayBuffer): string {
  let out = ''
  for (const byte of new Uint8Array(buf)) out += byte.toString(16).padStart(2, '0')
  return out
}

/** The hex SHA-256 of bytes already in memory. */
export async function sha256Bytes (data: Uint8Array, options: HashOptions = {}): Promise<string> {
  const s = subtle()
  if (s !== undefined && data.length <= (options.webCryptoLimit ?? 64 * 1024 * 1024)) {
    return toHex(await s.digest('SHA-256', data as Uint8Array<ArrayBuffer>))
  }
  return new Sha256().update(data).hex()
}

/** The hex SHA-256 of a Blob (or File): WebCrypto below the limit, else slice by slice. */
export async function sha256Blob (blob: Blob, options: HashOptions = {}): Promise<string> {
  const s = subtle()
  if (s !== undefined && blob.size <= (options.webCryptoLimit ?? 64 * 1024 * 1024)) {
    const digest = await s.digest('SHA-256', await blob.arrayBuffer())
    options.onProgress?.(blob.size)
    return toHex(digest)
  }
  const hash = new Sha256()
  const chunk = Math.max(64 * 1024, options.chunkSize ?? 4 * 1024 * 1024)
  for (let at = 0; at < blob.size; at += chunk) {
    options.signal?.throwIfAborted()
    const state = hash.state()
    if (state !== null) options.states?.set(at, state)
    hash.update(new Uint8Array(await blob.slice(at, at + chunk).arrayBuffer()))
    options.onProgress?.(Math.min(blob.size, at + chunk))
  }
  return hash.hex()
}
