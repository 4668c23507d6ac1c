// A thin typed fetch wrapper over control's REST API. Every type comes from
// the OpenAPI document (src/generated/api.d.ts, `npm run gen`): paths, path
// and query parameters, bodies, and the 2xx answer. No runtime code is
// generated; a non-2xx answer throws a TandemError.
import type { paths } from './generated/api.js'
import { TandemError, errorFromResponse, networkError } from './errors.js'

export type { paths, components } from './generated/api.js'

export type HttpMethod = 'get' | 'put' | 'post' | 'patch' | 'delete'

/** The paths that have an operation for method M. */
export type PathsWith<M extends HttpMethod> = {
  [P in keyof paths]: [NonNullable<paths[P] extends Record<M, unknown> ? paths[P][M] : never>] extends [never] ? never : P
}[keyof paths]

/** The OpenAPI operation object of (path, method). */
export type Operation<P extends keyof paths, M extends HttpMethod> = NonNullable<paths[P] extends Record<M, unknown> ? paths[P][M] : never>

type Params<O> = O extends { parameters: infer X } ? X : object
type JsonContent<R> = R extends { content: { 'application/json': infer J } } ? J : undefined

type PathPart<O> = Params<O> extends { path: infer PP } ? ([PP] extends [never] ? object : { path: PP }) : object
type QueryPart<O> = Params<O> extends { query: infer Q }
  ? ([Q] extends [never] ? object : { query: Q })
  : Params<O> extends { query?: infer Q } ? ([NonNullable<Q>] extends [never] ? object : { query?: NonNullable<Q> }) : object
type BodyPart<O> = O extends { requestBody: { content: { 'application/json': infer B } } }
  ? { body: B }
  : O extends { requestBody?: infer RB }
    ? ([NonNullable<RB>] extends [never] ? object : NonNullable<RB> extends { content: { 'application/json': infer B } } ? { body?: B } : object)
    : object

/** What a call takes besides the path: `path` and `query` parameters, the JSON `body`, extras. */
export type RequestOptions<O> = PathPart<O> & QueryPart<O> & BodyPart<O> & {
  /** Extra request headers (e.g. `x-request-id`). */
  headers?: Record<string, string>
  signal?: AbortSignal
}

type SuccessStatus = 200 | 201 | 202 | 204
/** The JSON body of any 2xx answer of an operation (`undefined` for 204). */
export type SuccessBody<O> = O extends { responses: infer R }
  ? { [S in SuccessStatus]: S extends keyof R ? JsonContent<R[S]> : never }[SuccessStatus]
  : never

/** Typed answer of `client.get('/workspaces')`, etc.: `ResponseOf<'/workspaces', 'get'>`. */
export type ResponseOf<P extends keyof paths, M extends HttpMethod> = SuccessBody<Operation<P, M>>
/** Typed request body: `BodyOf<'/auth/signup', 'post'>`. */
export type BodyOf<P extends keyof paths, M extends HttpMethod> = Operation<P, M> extends { requestBody?: { content: { 'application/json': infer B } } } ? B : never

type Args<O> = object extends RequestOptions<O> ? [options?: RequestOptions<O>] : [options: RequestOptions<O>]

/** The GET paths that answer one page of a list, `{ items, nextCursor }` (`?limit&cursor`). */
export type PagedPaths = {
  [P in PathsWith<'get'>]: SuccessBody<Operation<P, 'get'>> extends { items: unknown[], nextCursor: string | null } ? P : never
}[PathsWith<'get'>]
/** The item type of a paged list: `ItemOf<'/workspaces'>`. */
export type ItemOf<P extends PagedPaths> = SuccessBody<Operation<P, 'get'>> extends { items: Array<infer T> } ? T : never

export interface HttpClientOptions {
  /** Control's base URL, e.g. `http://127.0.0.1:8080`. */
  controlUrl: string
  /** Returns the session token (or IdP JWT) for `Authorization: Bearer`; null when signed out. */
  getSessionToken?: () => string | null | undefined | Promise<string | null | undefined>
  /** The fetch implementation (default: the global one). */
  fetch?: typeof fetch
}

export interface HttpClient {
  get<P extends PathsWith<'get'>>(path: P, ...args: Args<Operation<P, 'get'>>): Promise<SuccessBody<Operation<P, 'get'>>>
  post<P extends PathsWith<'post'>>(path: P, ...args: Args<Operation<P, 'post'>>): Promise<SuccessBody<Operation<P, 'post'>>>
  put<P extends PathsWith<'put'>>(path: P, ...args: Args<Operation<P, 'put'>>): Promise<SuccessBody<Operation<P, 'put'>>>
  patch<P extends PathsWith<'patch'>>(path: P, ...args: Args<Operation<P, 'patch'>>): Promise<SuccessBody<Operation<P, 'patch'>>>
  delete<P extends PathsWith<'delete'>>(path: P, ...args: Args<Operation<P, 'delete'>>): Promise<SuccessBody<Operation<P, 'delete'>>>
  /** Every item of a paged list: GETs page after page (`query.limit` per page) until `nextCursor` is null. */
  all<P extends PagedPaths>(path: P, ...args: Args<Operation<P, 'get'>>): Promise<Array<ItemOf<P>>>
  /** A raw authorized fetch against control (used for streams); throws TandemError on non-2xx. */
  fetchRaw(path: string, init?: RequestInit): Promise<Response>
}

interface LooseOptions {
  path?: Record<string, string | number>
  query?: Record<string, string | number | boolean | null | undefined>
  body?: unknown
  headers?: Record<string, string>
  signal?: AbortSignal
}

/** Replaces `{name}` segments with URL-encoded path parameters. */
export function fillPath (template: string, params: Record<string, string | number> = {}): string {
  return template.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const value = params[name]
    if (value === undefined) throw new TypeError(`missing path parameter "${name}" for ${template}`)
    return encodeURIComponent(String(value))
  })
}

export function createHttpClient (options: HttpClientOptions): HttpClient {
  const base = options.controlUrl.replace(/\/+$/, '')
  const doFetch = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => globalThis.fetch(input, init))

  const fetchRaw = async (path: string, init: RequestInit = {}): Promise<Response> => {
    const headers = new Headers(init.headers)
    const token = await options.getSessionToken?.()
    if (token) headers.set('authorization', `Bearer ${token}`)
    let res: Response
    try {
      res = await doFetch(base + path, { ...init, headers })
    } catch (err) {
      throw networkError(err)
    }
    if (!res.ok) throw await errorFromResponse(res)
    return res
  }

  const call = async (method: string, template: string, opts: LooseOptions = {}): Promise<unknown> => {
    let path = fillPath(template, opts.path)
    const query = new URLSearchParams()
    for (const [k, v] of Object.entries(opts.query ?? {})) {
      if (v !== undefined && v !== null) query.set(k, String(v))
    }
    if ([...query.keys()].length > 0) path += `?${query.toString()}`
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers }
    const init: RequestInit = { method: method.toUpperCase(), headers }
    if (opts.body !== undefined) {
      headers['content-type'] = 'application/json'
      init.body = JSON.stringify(opts.body)
    }
    if (opts.signal) init.signal = opts.signal
    const res = await fetchRaw(path, init)
    if (res.status === 204) return undefined
    const text = await res.text()
    if (text === '') return undefined
    try {
      return JSON.parse(text)
    } catch (err) {
      throw new TandemError({ status: res.status, code: 'bad_response', message: 'control answered with a body that is not JSON', requestId: res.headers.get('x-request-id') ?? undefined, cause: err })
    }
  }

  const method = (m: HttpMethod) => (path: string, opts?: LooseOptions) => call(m, path, opts)
  const all = async (path: string, opts: LooseOptions = {}): Promise<unknown[]> => {
    const items: unknown[] = []
    let cursor: string | null = null
    do {
      const query = cursor === null ? opts.query : { ...opts.query, cursor }
      const page = await call('get', path, { ...opts, query }) as { items: unknown[], nextCursor: string | null }
      items.push(...page.items)
      cursor = page.nextCursor
    } while (cursor !== null)
    return items
  }
  return {
    get: method('get'),
    post: method('post'),
    put: method('put'),
    patch: method('patch'),
    delete: method('delete'),
    all,
    fetchRaw
  } as HttpClient
}
