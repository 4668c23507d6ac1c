// Reconnect delays: exponential, capped, with jitter so that many clients
// dropped at once (a relay restart) do not come back in lockstep.

export interface BackoffOptions {
  /** First delay in ms (default 250). */
  initialMs?: number
  /** Largest delay in ms (default 10 000). */
  maxMs?: number
}

export class Backoff {
  private attempt = 0
  private readonly initialMs: number
  private readonly maxMs: number

  constructor (options: BackoffOptions = {}) {
    this.initialMs = Math.max(1, options.initialMs ?? 250)
    this.maxMs = Math.max(this.initialMs, options.maxMs ?? 10_000)
  }

  /** The delay before the next attempt: a random value in [cap/2, cap], cap doubling each time. */
  next (): number {
    const cap = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 30))
    this.attempt++
    return Math.round(cap / 2 + Math.random() * cap / 2)
  }

  /** Called after a success: the next failure starts from the first delay again. */
  reset (): void {
    this.attempt = 0
  }

  get attempts (): number {
    return this.attempt
  }
}
