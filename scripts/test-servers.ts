/**
 * `npm test` step: makes sure the Debian packages of the real test servers are installed (apt-get as root
 * on Debian/Ubuntu; otherwise fails listing what to install), before vitest starts them.
 */
import { ensurePackages } from '../test/harness/packages.ts';

const bins = await ensurePackages();
process.stderr.write(`test servers available: ${Object.keys(bins).join(', ')}\n`);
