// TandemError: every failed call to control, from the error envelope
// `{"error":{"code","message","requestId"}}` (or a network failure).

/** A failed request to control (or the network on the way to it). */
export class TandemError extends Error {
  override readonly name = 'TandemError'
  /** HTTP status; 0 when the request never got an answer (network, abort). */
  readonly status: number
  /** The envelope's machine-readable code (`not_found`, `rate_limited`…), or `network` / `bad_response`. */
  readonly code: string
  /** The request id control logged this request under (envelope or `x-request-id`), if any. */
  readonly requestId: string | undefined
  /** Seconds to wait before retrying, from `Retry-After` (429, 503), if given. */
  readonly retryAfter: number | undefined

  constructor (init: { status: number, code: string, message: string, requestId?: string | undefined, retryAfter?: number | undefined, cause?: unknown }) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause })
    this.status = init.status
    this.code = init.code
    this.requestId = init.requestId
    this.retryAfter = init.retryAfter
  }

  /** True for failures worth retrying later: network, 408, 429 and 5xx. */
  get retryable (): boolean {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500
  }
}

/** Builds a TandemError from a non-2xx response, reading the error envelope if there is one. */
export async function errorFromResponse (res: Response): Promise<TandemError> {
  const headerId = res.headers.get('x-request-id') ?? undefined
  const retryAfter = parseRetryAfter(res.headers.get('retry-after'))
  let code = `http_${res.status}`
  let message = `HTTP ${res.status}`
  let requestId = headerId
  try {
    const body: unknown = await res.json()
    const detail = (body as { error?: { code?: unknown, message?: unknown, requestId?: unknown } } | null)?.error
    if (detail && typeof detail.code === 'string') code = detail.code
    if (detail && typeof detail.message === 'string') message = detail.message
    if (detail && typeof detail.requestId === 'string') requestId = detail.requestId
  } catch {
    // Not JSON (a proxy's error page): keep the status-derived code.
  }
  return new TandemError({ status: res.status, code, message, requestId, retryAfter })
}

function parseRetryAfter (value: string | null): number | undefined {
  if (value === null) return undefined
  const secs = Number(value)
  if (Number.isFinite(secs) && secs >= 0) return secs
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, (at - Date.now()) / 1000)
}

/** Wraps a fetch rejection (DNS, refused connection, abort) as a TandemError with status 0. */
export function networkError (err: unknown): TandemError {
  const aborted = (err as { name?: unknown } | null)?.name === 'AbortError'
  return new TandemError({
    status: 0,
    code: aborted ? 'aborted' : 'network',
    message: aborted ? 'request aborted' : `network error: ${String((err as Error)?.message ?? err)}`,
    cause: err
  })
}
