// Builds the demo into dist/: index.html, assets/app.js, assets/app.css.
// Deterministic (same sources and lockfile → same bytes): fixed names, no
// source maps, no timestamps. dist/ is checked in and embedded in control.
import { build } from 'esbuild'
import { copyFileSync, mkdirSync, rmSync } from 'node:fs'

const here = new URL('.', import.meta.url).pathname
rmSync(`${here}dist`, { recursive: true, force: true })
mkdirSync(`${here}dist/assets`, { recursive: true })
await build({
  entryPoints: { app: `${here}src/main.tsx`, 'app-style': `${here}src/style.css` },
  outdir: `${here}dist/assets`,
  entryNames: '[name]',
  bundle: true,
  // @tandem/* are symlinks into clients/js: resolve their yjs, react… here, one copy each.
  preserveSymlinks: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  jsx: 'automatic',
  legalComments: 'none',
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning'
})
// esbuild names a CSS entry after its key; the page links assets/app.css.
rmSync(`${here}dist/assets/app.css`, { force: true })
copyFileSync(`${here}dist/assets/app-style.css`, `${here}dist/assets/app.css`)
rmSync(`${here}dist/assets/app-style.css`)
copyFileSync(`${here}index.html`, `${here}dist/index.html`)
