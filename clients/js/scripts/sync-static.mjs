// Copy the browser modules from app/static (their one source: the app serves them as plain
// ES modules) into this package before `npm pack` / `npm publish` (the prepack script):
// lastra-client.js and lastra-vue.js, and every module they import, followed through the
// static `./x.js` imports, so a new helper module of the client is packed without a change here.
import { copyFileSync, existsSync, readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const staticDir = join(pkg, '..', '..', 'app', 'static');
const ENTRY_POINTS = ['lastra-client.js', 'lastra-vue.js'];
const IMPORT = /\b(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g;

function fail(message) {
  console.error(`sync-static: ${message}`);
  process.exit(1);
}

if (!existsSync(join(staticDir, 'lastra-client.js'))) {
  fail(`${staticDir} not found; pack from a checkout of the Lastra repository`);
}
const modules = new Set();
const queue = [...ENTRY_POINTS];
while (queue.length) {
  const name = queue.shift();
  if (modules.has(name)) continue;
  modules.add(name);
  const code = readFileSync(join(staticDir, name), 'utf8')
    .split('\n').filter((line) => !/^\s*(\/\/|\/?\*)/.test(line)).join('\n'); // no comments
  for (const [, spec] of code.matchAll(IMPORT)) {
    if (spec === 'vue') continue; // the peer dependency
    if (!/^\.\/lastra-[\w-]+\.js$/.test(spec)) fail(`${name} imports ${spec}: only ./lastra-*.js modules can be packed`);
    queue.push(spec.slice(2));
  }
}
for (const old of readdirSync(pkg)) {
  if (/^lastra-[\w-]+\.js$/.test(old) && !modules.has(old)) unlinkSync(join(pkg, old));
}
for (const name of modules) copyFileSync(join(staticDir, name), join(pkg, name));
console.error(`sync-static: copied ${[...modules].join(', ')} from app/static`);
