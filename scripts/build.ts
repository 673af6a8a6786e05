/**
 * Bundles the CLI/server into dist/ with esbuild, for fast cold starts: a one-off `gameops check daily`
 * spends most of its time resolving and loading hundreds of small module files when run from sources.
 * Code splitting keeps commands lazy (the server's modules load only for `serve`). `npm run setup`
 * runs this; bin/gameops uses the bundle only while it is newer than every source file, so an edited
 * tree always runs its sources.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { build, transform, type Plugin } from 'esbuild';

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
const appDir = join(outdir, 'app');
rmSync(outdir, { recursive: true, force: true });

// 1. The CLI as ES modules, code-split so a command loads only its own modules.
const esmDir = mkdtempSync(join(tmpdir(), 'gameops-build-'));
try {
  const result = await build({
    entryPoints: { gameops: join(root, 'src/cli/main.ts') },
    outdir: esmDir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    // The files become CommonJS scripts in step 2; their imports of each other name them as such.
    outExtension: { '.js': '.cjs' },
    chunkNames: 'chunks/[name]-[hash]',
    // Optional native bindings some drivers probe for; never installed here.
    external: ['pg-native', 'cloudflare:sockets'],
    // The entry runs the command line (main.ts's `if (import.meta.main)`).
    define: { 'import.meta.main': 'true' },
    plugins: [zodEnglishOnly],
    logLevel: 'warning',
    metafile: true,
  });

  // 2. Each file as a CommonJS script (dynamic `import()` becomes `require`), which src/cli/code-cache.ts
  // compiles with `vm.Script` and caches after the command ran. esbuild cannot code-split CommonJS itself.
  const hash = createHash('sha256');
  let bytes = 0;
  for (const output of Object.keys(result.metafile.outputs).sort()) {
    const rel = relative(esmDir, join(root, output));
    const script = await transform(readFileSync(join(esmDir, rel), 'utf8'), {
      format: 'cjs',
      loader: 'js',
      platform: 'node',
      target: 'node24',
      supported: { 'dynamic-import': false },
      sourcefile: rel,
      logLevel: 'silent',
    });
    // `import.meta` would be empty in a script (top-level await fails the transform itself).
    const meta = script.warnings.filter((w) => w.text.includes('import.meta'));
    if (meta.length > 0)
      throw new Error(`build: ${rel} cannot run as a script: ${meta.map((w) => w.text).join('; ')}`);
    mkdirSync(dirname(join(appDir, rel)), { recursive: true });
    writeFileSync(join(appDir, rel), script.code);
    hash.update(rel).update(script.code);
    bytes += script.code.length;
  }

  // 3. The entry, dist/gameops.mjs, last: bin/gameops uses dist/ only while this file is newer than the sources.
  await build({
    entryPoints: [join(root, 'src/cli/launcher.ts')],
    outfile: join(outdir, 'gameops.mjs'),
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    define: { GAMEOPS_BUILD_ID: JSON.stringify(hash.digest('hex').slice(0, 12)) },
    logLevel: 'warning',
  });
  process.stderr.write(`build: dist/ written (${(bytes / 1024 / 1024).toFixed(1)} MiB)\n`);
} finally {
  rmSync(esmDir, { recursive: true, force: true });
}
