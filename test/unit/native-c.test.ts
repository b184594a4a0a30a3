// The addon's pure C parts (native/src files with no Node-API in them) have standalone
// tests, native/test/*_test.c, built and run under ASan + UBSan by native/test/run.sh.
// This runs that script. A missing gcc is a failure, not a skip: CI always has one.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const RUN = fileURLToPath(new URL('../../native/test/run.sh', import.meta.url));
const TIMEOUT_MS = 240_000;

describe('native C tests (native/test/run.sh)', () => {
  it('gcc is available', () => {
    const r = spawnSync('gcc', ['--version'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.error, 'gcc not found: the native C tests need it (apt-get install gcc)').toBeUndefined();
    expect(r.status).toBe(0);
  });

  it('every native/test/*_test.c builds warning-free and passes under ASan + UBSan', () => {
    const r = spawnSync('bash', [RUN], { cwd: REPO, encoding: 'utf8', timeout: TIMEOUT_MS, maxBuffer: 64 << 20 });
    const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    expect(r.error, `run.sh did not finish (timeout ${TIMEOUT_MS} ms?):\n${output}`).toBeUndefined();
    expect(r.status, `native/test/run.sh failed:\n${output}`).toBe(0);
    expect(output).toMatch(/native tests passed: \d+/);
  }, TIMEOUT_MS + 10_000);
});
