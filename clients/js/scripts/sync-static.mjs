// Copy the browser modules from app/static (their one source: the app serves them as
// plain ES modules) into this package before `npm pack` / `npm publish` (the prepack script).
import { copyFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, '..');
const staticDir = join(pkg, '..', '..', 'app', 'static');
export const MODULES = ['lastra-client.js', 'lastra-transports.js', 'lastra-tabs.js', 'lastra-vue.js'];

if (!existsSync(join(staticDir, 'lastra-client.js'))) {
  console.error(`sync-static: ${staticDir} not found; pack from a checkout of the Lastra repository`);
  process.exit(1);
}
for (const name of MODULES) copyFileSync(join(staticDir, name), join(pkg, name));
console.error(`sync-static: copied ${MODULES.join(', ')} from app/static`);
