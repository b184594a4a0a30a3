// The node's state directory (default /var/lib/meshd, 0700): its private key
// (node.key, 0600, never leaves the node), its settings (prefs.json: the
// login server, the pinned server key, the host name, whether it should be
// up), and the last netmap (netmap.json), which lets a restarted daemon
// bring its tunnels back while the server is unreachable.
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { MapResponse } from '../control/messages.js';
import { loadOrCreateKey, StateError, writeSecretFile } from '../state/secrets.js';

export const DEFAULT_STATE_DIR = '/var/lib/meshd';

export interface Prefs {
  loginServer: string | null;
  /** base64; pinned on first contact or from the login URL's key=. */
  serverKey: string | null;
  hostname: string | null;
  /** Set by up, cleared by down: a restarted daemon comes back up when set. */
  wantRunning: boolean;
  /** The server accepted this node (so reconnecting needs no auth key). */
  registered: boolean;
  /** Subnets offered to the mesh (`--advertise-routes`). */
  advertiseRoutes: string[];
  /** Route other routers' subnets into the TUN (`--accept-routes`). */
  acceptRoutes: boolean;
  /** Masquerade mesh traffic into the advertised subnets (`--snat-subnet-routes`, default on). */
  snatSubnetRoutes: boolean;
  advertiseTags: string[];
}

const EMPTY: Prefs = {
  loginServer: null,
  serverKey: null,
  hostname: null,
  wantRunning: false,
  registered: false,
  advertiseRoutes: [],
  acceptRoutes: false,
  snatSubnetRoutes: true,
  advertiseTags: [],
};

export class NodeState {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  }

  private path(name: string): string {
    return join(this.dir, name);
  }

  /** The node's private key, made on first use. */
  nodeKey(): Uint8Array {
    return loadOrCreateKey(this.path('node.key'));
  }

  prefs(): Prefs {
    const p = this.path('prefs.json');
    if (!existsSync(p)) return { ...EMPTY };
    try {
      return { ...EMPTY, ...(JSON.parse(readFileSync(p, 'utf8')) as Partial<Prefs>) };
    } catch (err) {
      throw new StateError('ESTATE', `${p} is not valid JSON (${(err as Error).message}); fix or remove it`);
    }
  }

  savePrefs(p: Prefs): void {
    writeSecretFile(this.path('prefs.json'), `${JSON.stringify(p, null, 2)}\n`);
  }

  netmap(): MapResponse | null {
    const p = this.path('netmap.json');
    if (!existsSync(p)) return null;
    try {
      return JSON.parse(readFileSync(p, 'utf8')) as MapResponse;
    } catch {
      return null; // a cache: a bad one is only a missed head start
    }
  }

  saveNetmap(m: MapResponse): void {
    writeSecretFile(this.path('netmap.json'), JSON.stringify(m));
  }

  /** logout: the node's identity and everything learned with it go. */
  forget(): void {
    for (const f of ['node.key', 'prefs.json', 'netmap.json']) rmSync(this.path(f), { force: true });
  }
}
