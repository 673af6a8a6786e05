/**
 * Bundles the CLI/server into dist/ with esbuild, for fast cold starts: a one-off `gameops check daily`
 * spends most of its time resolving and loading hundreds of small module files when run from sources.
 * Code splitting keeps commands lazy (the server's modules load only for `serve`). `npm run setup`
 * runs this; bin/gameops uses the bundle only while it is newer than every source file, so an edited
 * tree always runs its sources.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { build, type Plugin } from 'esbuild';

const root = join(import.meta.dirname, '..');

/**
 * zod's namespace re-exports every message locale (`z.locales`: half of zod's code) so none can be
 * dropped; every command would load them. gameops speaks English only (zod's default locale, which its
 * schemas register themselves), so the bundle's `z.locales` holds `en` alone.
 */
const zodEnglishOnly: Plugin = {
  name: 'zod-english-only',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]node_modules[\\/]zod[\\/]/.test(args.importer)
        ? { path: join(args.resolveDir, '../locales/en.js'), namespace: 'zod-locales' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'zod-locales' }, (args) => ({
      contents: `export { default as en } from ${JSON.stringify(args.path)};`,
      resolveDir: root,
    }));
  },
};
const outdir = join(root, 'dist');
rmSync(outdir, { recursive: true, force: true });
const result = await build({
  entryPoints: { gameops: join(root, 'src/cli/main.ts') },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node24',
  outExtension: { '.js': '.mjs' },
  chunkNames: 'chunks/[name]-[hash]',
  sourcemap: 'linked',
  // Optional native bindings some drivers probe for; never installed here.
  external: ['pg-native', 'cloudflare:sockets'],
  // CommonJS dependencies call require(); give the ESM bundle one.
  banner: {
    js: "import { createRequire as __gameopsCreateRequire } from 'node:module'; const require = __gameopsCreateRequire(import.meta.url);",
  },
  plugins: [zodEnglishOnly],
  logLevel: 'warning',
  metafile: true,
});
const bytes = Object.values(result.metafile.outputs).reduce((sum, o) => sum + o.bytes, 0);
process.stderr.write(`build: dist/ written (${(bytes / 1024 / 1024).toFixed(1)} MiB)\n`);
