// Hybrid logical clocks in the wire format of the sync engine:
// "{unix ms, 13 digits}:{counter, 6 digits}:{clientId}", ordered as strings.
// A clock never goes backwards: it takes the wall clock when that is ahead,
// otherwise bumps the counter; it also moves past every clock it receives, so
// a local edit made after a remote change always carries a later clock.

const MAX_COUNTER = 999_999

export interface HlcParts {
  ms: number
  counter: number
  clientId: string
}

/** Formats a clock: `0001764787200000:000001:abc`-style, 13 + 6 digits. */
export function formatHlc (ms: number, counter: number, clientId: string): string {
  return `${String(ms).padStart(13, '0')}:${String(counter).padStart(6, '0')}:${clientId}`
}

/** Parses a clock; null when it is not in the contract's format. */
export function parseHlc (hlc: string): HlcParts | null {
  const m = /^(\d{13}):(\d{6}):(.+)$/.exec(hlc)
  if (m === null) return null
  return { ms: Number(m[1]), counter: Number(m[2]), clientId: m[3] as string }
}

export class HybridClock {
  private ms = 0
  private counter = 0

  constructor (readonly clientId: string, private readonly wallClock: () => number = Date.now) {
    if (clientId.includes(':') || clientId === '') throw new TypeError('a clock client id must be non-empty and contain no ":"')
  }

  /** The next clock for a local change. */
  now (): string {
    const wall = Math.floor(this.wallClock())
    if (wall > this.ms) {
      this.ms = wall
      this.counter = 0
    } else if (this.counter >= MAX_COUNTER) {
      this.ms += 1
      this.counter = 0
    } else {
      this.counter += 1
    }
    return formatHlc(this.ms, this.counter, this.clientId)
  }

  /** Moves this clock past a clock seen elsewhere (a pulled change, an older pending change). */
  receive (hlc: string): void {
    const parts = parseHlc(hlc)
    if (parts === null) return
    if (parts.ms > this.ms || (parts.ms === this.ms && parts.counter > this.counter)) {
      this.ms = parts.ms
      this.counter = parts.counter
    }
  }
}
