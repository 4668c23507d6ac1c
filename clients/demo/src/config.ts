// Where the demo finds control and the relay. By default control is the
// page's origin (control serves the demo) and the relay is what control wrote
// into <meta name="tandem-relay-url"> when it served index.html. `?control=`
// and `?relay=` override both (kept for the tab in sessionStorage), so the
// same build also runs from another origin, as the browser tests do.

export interface Endpoints {
  controlUrl: string
  relayUrl: string
}

const KEY = 'tandem.endpoints'

const SCHEME = location.protocol === 'https:' ? 'wss:' : 'ws:'

// A full URL, or `:PORT` for "this page's host name, that port".
function fromMeta (): string {
  const meta = document.querySelector('meta[name="tandem-relay-url"]')
  const content = meta?.getAttribute('content')?.trim() ?? ''
  return content.startsWith(':') ? `${SCHEME}//${location.hostname}${content}` : content
}

function defaultRelay (): string {
  return `${SCHEME}//${location.hostname}:1999`
}

export function endpoints (): Endpoints {
  const query = new URLSearchParams(location.search)
  let saved: Partial<Endpoints> = {}
  try { saved = JSON.parse(sessionStorage.getItem(KEY) ?? '{}') as Partial<Endpoints> } catch { saved = {} }
  const controlUrl = (query.get('control') ?? saved.controlUrl ?? location.origin).replace(/\/$/, '')
  const relayUrl = (query.get('relay') ?? saved.relayUrl ?? (fromMeta() || defaultRelay())).replace(/\/$/, '')
  if (query.has('control') || query.has('relay')) {
    sessionStorage.setItem(KEY, JSON.stringify({ controlUrl, relayUrl }))
  }
  return { controlUrl, relayUrl }
}
