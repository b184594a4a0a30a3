// `meshd status --json`: the node's state in one documented, versioned
// shape (STATUS_SCHEMA; fields are only ever added within a version), and
// the health lines `meshd status` prints under its table. Pure: the agent
// hands in what it knows and the time.
import type { FilterRule, PeerNode, SelfNode } from '../control/messages.js';
import type { AgentState } from './agent.js';

export const STATUS_SCHEMA = 1;

/** Warn about a node key expiring within this many days. */
const KEY_EXPIRY_WARN_DAYS = 14;
/** A peer we send to without a handshake for this long is not answering (REJECT_AFTER_TIME, paper §6.1). */
const NO_HANDSHAKE_WARN_MS = 180_000;

export interface PeerStatus extends PeerNode {
  /** Where its packets go now: learned from its authenticated packets or the server's first candidate. */
  endpoint: string | null;
  /** Every peer is reached directly over UDP (there are no relays yet). */
  direct: boolean;
  /** ms since the epoch; null before the first handshake. */
  lastHandshake: number | null;
  rxBytes: number;
  txBytes: number;
}

export interface StatusJson {
  schema: typeof STATUS_SCHEMA;
  /** stopped | needs-login | pending-approval | running */
  state: AgentState;
  loginServer: string | null;
  publicKey: string;
  interface: string | null;
  listenPort: number | null;
  /** Where transport data is handled while the interface is up: the addon's threads or TypeScript. */
  datapath: 'native' | 'js' | null;
  /** The last control-plane error, null once the server answers again. */
  lastError: string | null;
  lastContact: number | null;
  self: SelfNode | null;
  netmapVersion: number;
  settings: { advertiseRoutes: string[]; acceptRoutes: boolean; snatSubnetRoutes: boolean; advertiseTags: string[] };
  /** Subnets this node is routing for the mesh now. */
  routing: string[];
  /** Why it could not route its approved subnets (forwarding or nftables refused), else null. */
  routingError: string | null;
  /** Subnets routed into the TUN from other nodes (with --accept-routes). */
  acceptedRoutes: string[];
  packetFilter: FilterRule[];
  /** Packets dropped, by reason (src/wire/drops.ts). */
  drops: Record<string, number>;
  filter: Record<string, unknown>;
  peers: PeerStatus[];
  /** Things an operator should look at, one sentence each. */
  health: string[];
}

export type StatusInput = Omit<StatusJson, 'schema' | 'health'>;

export function health(s: StatusInput, now: number): string[] {
  const out: string[] = [];
  if (s.state === 'needs-login') out.push('this node is not in the mesh: run meshd up --authkey KEY');
  if (s.state === 'pending-approval') out.push(`waiting for an admin: meshd admin nodes approve ${s.self?.name ?? ''}`.trimEnd());
  if (s.lastError) out.push(`control server: ${s.lastError}`);
  if (s.routingError) out.push(`subnet routing failed: ${s.routingError}`);
  const expiry = s.self?.keyExpiry;
  if (expiry != null) {
    const days = (expiry - now) / 86_400_000;
    if (days <= 0) out.push('node key has expired: meshd up --authkey KEY');
    else if (days <= KEY_EXPIRY_WARN_DAYS) out.push(`node key expires in ${Math.ceil(days)} day${Math.ceil(days) === 1 ? '' : 's'}`);
  }
  for (const r of s.self?.routes ?? []) {
    if (!r.approved) out.push(`route ${r.prefix} is pending approval: meshd admin routes approve ${r.prefix}`);
    else if (!r.primary) out.push(`route ${r.prefix} is approved but another router is primary (standby)`);
  }
  for (const p of s.peers) {
    if (p.txBytes === 0) continue;
    const since = p.lastHandshake === null ? null : now - p.lastHandshake;
    if (since === null || since > NO_HANDSHAKE_WARN_MS) {
      const what = since === null ? 'never' : `not for ${Math.round(since / 60_000)} minutes`;
      out.push(`no handshake with ${p.name} (${what}) though we send to it${p.online ? '' : '; it is offline'}`);
    }
  }
  return out;
}

export function buildStatus(s: StatusInput, now: number): StatusJson {
  return { schema: STATUS_SCHEMA, ...s, health: health(s, now) };
}
