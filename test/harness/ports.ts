// Free ports for tests (re-exported so tests import from the harness only).
export { freePort } from '../../src/util/ports.js';
