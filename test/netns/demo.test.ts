// The README's first command, as CI runs it: `scripts/demo.sh --check` builds
// the whole demo (server, subnet router in front of a VPC, alice's and bob's
// laptops, route approval, policy), checks every result and tears down. The
// test asserts that it said so, and that nothing of it is left behind.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { run } from '../support/netns.js';

const DEMO = fileURLToPath(new URL('../../scripts/demo.sh', import.meta.url));
const LIMIT_MS = 180_000;

interface DemoRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
  ms: number;
}

/** Runs the demo to completion; SIGTERM at LIMIT_MS (its trap tears down), SIGKILL 20 s later. */
function runDemo(args: string[]): Promise<DemoRun> {
  const started = Date.now();
  // dist/ is built by the suite's global setup: no apt, npm ci or build here.
  const child = spawn('bash', [DEMO, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MESHD_DEMO_SKIP_SETUP: '1' } });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
  const term = setTimeout(() => child.kill('SIGTERM'), LIMIT_MS);
  const kill = setTimeout(() => child.kill('SIGKILL'), LIMIT_MS + 20_000);
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(term);
      clearTimeout(kill);
      resolve({ code, signal, output, ms: Date.now() - started });
    });
  });
}

async function namespacesWith(prefix: string): Promise<string[]> {
  const r = await run(null, 'ip', ['netns', 'list']);
  return r.stdout
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => n.startsWith(`${prefix}-`));
}

/** What a failed run left: the demo's namespaces (and what runs in them) go, so the machine stays clean. */
async function removeLeftovers(prefix: string, namespaces: string[]): Promise<void> {
  for (const ns of namespaces) {
    for (const pid of (await run(null, 'ip', ['netns', 'pids', ns])).stdout.split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await run(null, 'ip', ['netns', 'del', ns]);
  }
  await run(null, 'bash', ['-c', `rm -rf /var/run/wireguard/${prefix}-*.sock /run/meshd-demo/${prefix}.state /tmp/${prefix}.*`]);
}

describe.skipIf(process.getuid?.() !== 0)('scripts/demo.sh --check (network namespaces)', () => {
  it(
    'shows the fetch through the subnet router and the two refusals, exits 0, and leaves nothing behind',
    async () => {
      const r = await runDemo(['--check']);
      const prefix = /namespaces (mdemo-[0-9a-f]{4})-\*/.exec(r.output)?.[1];
      expect(prefix, r.output).toBeDefined();
      const left = await namespacesWith(prefix!);
      if (left.length > 0) await removeLeftovers(prefix!, left);

      expect(r.signal, r.output).toBeNull();
      expect(r.code, r.output).toBe(0);
      expect(r.output).toMatch(/== all \d+ results as expected/);
      expect(r.output).toMatch(/HTTP 200: hello from the VPC web server 10\.0\.1\.10 \(it sees you as 10\.0\.1\.1\)/);
      expect(r.output).toMatch(/alice -> 10\.0\.1\.10:5432 \(db\):\s+refused by policy \(as intended\)/);
      expect(r.output).toMatch(/bob\s+-> 10\.0\.1\.10:80 \(web\):\s+refused by policy \(as intended\)/);
      expect(r.output).toMatch(/pong from router/);
      expect(r.output).toMatch(/1\s+router\s+10\.0\.0\.0\/16\s+primary/);

      // Torn down: namespaces, UAPI sockets, state file, temp dir.
      expect(left).toEqual([]);
      const uapi = existsSync('/var/run/wireguard') ? readdirSync('/var/run/wireguard') : [];
      expect(uapi.filter((f) => f.startsWith(`${prefix}-`))).toEqual([]);
      expect(existsSync(`/run/meshd-demo/${prefix}.state`)).toBe(false);
      expect(readdirSync('/tmp').filter((f) => f.startsWith(`${prefix}.`))).toEqual([]);
      expect(r.output).toContain(`namespaces ${prefix}-* deleted`);
    },
    LIMIT_MS + 40_000,
  );
});
