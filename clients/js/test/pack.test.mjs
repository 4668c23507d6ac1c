// `npm pack` makes installable packages with types: pack both, install the
// tarballs into an empty project, import them, and typecheck a file there.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

test('packed @tandem/client and @tandem/react install, import and typecheck', { timeout: 120000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-pack-'))
  try {
    for (const p of ['client', 'react']) {
      assert.ok(existsSync(join(root, 'packages', p, 'dist', 'index.d.ts')), `packages/${p}/dist is missing: npm run build first`)
    }
    // --ignore-scripts: `prepack` would build again; scripts/test.sh has just built.
    run(npm, ['pack', '--silent', '--ignore-scripts', '--pack-destination', dir, '-w', '@tandem/client', '-w', '@tandem/react'], root)
    const tarballs = readdirSync(dir).filter((f) => f.endsWith('.tgz')).sort()
    assert.deepEqual(tarballs, ['tandem-client-0.1.0.tgz', 'tandem-react-0.1.0.tgz'])
    const listing = run('tar', ['-tzf', join(dir, tarballs[0])], dir)
    assert.match(listing, /package\/dist\/index\.d\.ts/)
    assert.match(listing, /package\/dist\/generated\/api\.d\.ts/)
    assert.match(listing, /package\/README\.md/)
    assert.doesNotMatch(listing, /package\/src\/|test/)

    const app = join(dir, 'app')
    mkdirSync(app)
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }))
    // Peers at the versions the workspace locks (in npm's cache after `npm ci`).
    const lock = (name) => JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version
    const peers = ['yjs', 'y-protocols', 'lib0', 'react', '@types/react', 'dexie'].map((n) => `${n}@${lock(n)}`)
    run(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', ...tarballs.map((t) => join(dir, t)), ...peers], app)

    writeFileSync(join(app, 'smoke.mjs'), `
      import { createTandem, TandemError } from '@tandem/client'
      import { useTandemDocument, TandemProvider } from '@tandem/react'
      import { createSync } from '@tandem/client/sync'
      import { useSync, useLiveQuery } from '@tandem/react/sync'
      const t = createTandem({ controlUrl: 'http://127.0.0.1:1' })
      if (typeof t.connectDocument !== 'function' || typeof useTandemDocument !== 'function' || typeof TandemProvider !== 'function') process.exit(1)
      if (typeof createSync !== 'function' || typeof useSync !== 'function' || typeof useLiveQuery !== 'function') process.exit(1)
      console.log(t.relayUrl, new TandemError({ status: 404, code: 'not_found', message: 'x' }).code)
    `)
    assert.equal(run(process.execPath, ['smoke.mjs'], app).trim(), 'ws://127.0.0.1:1999 not_found')

    writeFileSync(join(app, 'app.ts'), `
      import { createTandem } from '@tandem/client'
      import { useTandemDocument } from '@tandem/react'
      import { createSync, type SyncStatus } from '@tandem/client/sync'
      import * as Y from 'yjs'
      export function syncTodos (t: ReturnType<typeof createTandem>): SyncStatus {
        const sync = createSync<{ todos: { id: string, title: string } }>(t, { workspaceId: 'w', tables: { todos: 'id' }, autoStart: false })
        void sync.db.todos.put({ id: 'a', title: 'b' })
        // @ts-expect-error not a row of the table
        void sync.db.todos.put({ id: 1 })
        return sync.status
      }
      export async function main (): Promise<string> {
        const t = createTandem({ controlUrl: 'http://127.0.0.1:8080' })
        const p = await t.api.post('/workspaces/{id}/projects', { path: { id: 'w' }, body: { name: 'n' } })
        t.connectDocument('doc', 'd', new Y.Doc())
        void useTandemDocument
        // @ts-expect-error not an API path
        await t.api.get('/nope')
        return p.name
      }
    `)
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, lib: ['ES2022', 'DOM'], types: [] },
      files: ['app.ts']
    }))
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
    run(process.execPath, [tsc, '-p', 'tsconfig.json'], app)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
