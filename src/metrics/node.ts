// The node daemon's metrics (`meshd daemon --metrics ADDR`): per-peer
// traffic, handshakes and session age from the Device, drops by reason, and
// in agent mode the packet filter, the netmap version and the control
// connection. Peers are labelled by public key (and by name when the netmap
// gives one); no private or pre-shared key, auth key or token is ever read.
import { Registry } from 'prom-client';
import type { Device } from '../device/device.js';
import type { Peer } from '../device/peer.js';
import type { FilterStats } from '../filter/filter.js';
import type { AgentState } from '../node/agent.js';
import { DROP_REASONS } from '../wire/drops.js';
import { liveCounter, liveGauge, memo } from './collect.js';
import type { DatapathStats } from '../io/datapath.js';

/** How well the native packet loop batches: syscalls against packets, GSO/GRO use. */
function datapathMetrics(reg: Registry, stats: () => DatapathStats | null): void {
  const counter = (name: string, help: string, value: (s: DatapathStats) => number) =>
    liveCounter(reg, name, help, [], (emit) => {
      const s = stats();
      if (s) emit({}, value(s));
    });
  counter('meshd_datapath_tun_reads_total', 'read() calls on the TUN (one may carry a 64 KiB TCP super-packet)', (s) => s.tunReads);
  counter('meshd_datapath_tun_writes_total', 'write()/writev() calls on the TUN', (s) => s.tunWrites);
  counter('meshd_datapath_tun_coalesced_packets_total', 'Packets written to the TUN inside coalesced GSO writes', (s) => s.coalesced);
  counter('meshd_datapath_udp_send_calls_total', 'sendmmsg() calls', (s) => s.txSyscalls);
  counter('meshd_datapath_udp_recv_calls_total', 'recvmmsg() calls', (s) => s.rxSyscalls);
  counter('meshd_datapath_udp_gso_sends_total', 'Messages sent as one UDP GSO super-datagram', (s) => s.gsoSends);
  counter('meshd_datapath_udp_gro_segments_total', 'Datagrams received inside UDP GRO buffers', (s) => s.groSegments);
}

/** What the agent's snapshot() gives that the metrics use. */
export interface AgentView {
  state: AgentState;
  netmapVersion: number;
  lastContact: number | null;
  lastError: string | null;
  /** PacketFilter.stats() (the status JSON carries it untyped). */
  filter: Partial<FilterStats> | Record<string, unknown>;
  peers: ReadonlyArray<{ publicKey: string; name: string; online?: boolean }>;
}

export interface NodeMetricsSource {
  /** The interface's device; null while the node is down. */
  device(): Device | null;
  /** Agent mode only (no --config). */
  agent?(): AgentView;
  /** The native datapath's counters; null on the TypeScript datapath. */
  datapath?(): DatapathStats | null;
}

const AGENT_STATES = ['stopped', 'needs-login', 'pending-approval', 'running'] as const satisfies readonly AgentState[];

type PeerLabel = 'public_key' | 'name';
const PEER_LABELS: readonly PeerLabel[] = ['public_key', 'name'];

export function nodeRegistry(src: NodeMetricsSource): Registry {
  const reg = new Registry();
  const agent = src.agent ? memo(src.agent) : null;
  const names = (): Map<string, string> => new Map((agent?.().peers ?? []).map((p) => [p.publicKey, p.name]));

  /** Each peer of the device with its labels. */
  const eachPeer = (fn: (labels: Partial<Record<PeerLabel, string>>, p: Peer, dev: Device) => void) => {
    const dev = src.device();
    if (!dev) return;
    const byKey = names();
    for (const [key, p] of dev.peers) {
      const name = byKey.get(key);
      fn(name ? { public_key: key, name } : { public_key: key }, p, dev);
    }
  };
  const perPeer = (name: string, help: string, value: (p: Peer) => number) =>
    liveCounter(reg, name, help, PEER_LABELS, (emit) => eachPeer((l, p) => emit(l, value(p))));

  liveGauge(reg, 'meshd_interface_up', '1 while the WireGuard interface exists and is up', [], (emit) => emit({}, src.device()?.up ? 1 : 0));
  liveGauge(reg, 'meshd_peers', 'Peers configured on the interface', [], (emit) => emit({}, src.device()?.peers.size ?? 0));
  perPeer('meshd_peer_rx_bytes_total', 'Bytes received from the peer (authenticated datagrams, as wg show transfer)', (p) => p.rxBytes);
  perPeer('meshd_peer_tx_bytes_total', 'Bytes sent to the peer (datagrams, as wg show transfer)', (p) => p.txBytes);
  perPeer('meshd_peer_rx_packets_total', 'Transport packets received from the peer', (p) => p.rxPackets);
  perPeer('meshd_peer_tx_packets_total', 'Transport packets sent to the peer', (p) => p.txPackets);
  perPeer('meshd_peer_handshakes_total', 'Handshakes completed with the peer', (p) => p.handshakesCompleted);
  liveGauge(reg, 'meshd_peer_last_handshake_timestamp_seconds', 'Unix time of the last completed handshake (peers that had one)', PEER_LABELS, (emit) =>
    eachPeer((l, p) => {
      if (p.lastHandshakeWall) emit(l, p.lastHandshakeWall / 1000);
    }),
  );
  liveGauge(reg, 'meshd_peer_session_age_seconds', 'Seconds since the last completed handshake (peers that had one)', PEER_LABELS, (emit) =>
    eachPeer((l, p, dev) => {
      if (p.lastHandshakeWall) emit(l, Math.max(0, dev.clock.wall() - p.lastHandshakeWall) / 1000);
    }),
  );
  liveCounter(reg, 'meshd_drops_total', 'Packets dropped, by reason (src/wire/drops.ts)', ['reason'], (emit) => {
    const dev = src.device();
    if (!dev) return;
    for (const reason of DROP_REASONS) emit({ reason }, dev.drops.get(reason));
  });
  if (src.datapath) datapathMetrics(reg, memo(src.datapath));
  if (agent) agentMetrics(reg, agent);
  return reg;
}

const FILTER_FIELDS = ['accept', 'filtered', 'malformed', 'replies', 'icmpErrors', 'fragments', 'outbound', 'flows', 'inboundFlows', 'maxFlows', 'evictions', 'expired', 'permissive', 'rules'] as const satisfies ReadonlyArray<keyof FilterStats>;

/** The filter's stats as numbers (true is 1; a missing field 0). */
function filterStats(v: AgentView): Record<(typeof FILTER_FIELDS)[number], number> {
  const raw = v.filter as Record<string, unknown>;
  const num = (x: unknown) => (typeof x === 'number' ? x : x === true ? 1 : 0);
  return Object.fromEntries(FILTER_FIELDS.map((k) => [k, num(raw[k])])) as Record<(typeof FILTER_FIELDS)[number], number>;
}

function agentMetrics(reg: Registry, agent: () => AgentView): void {
  const f = () => filterStats(agent());
  liveGauge(reg, 'meshd_netmap_version', 'Version of the netmap in force', [], (emit) => emit({}, agent().netmapVersion));
  liveGauge(reg, 'meshd_control_state', '1 for the state the node is in (stopped, needs-login, pending-approval, running)', ['state'], (emit) => {
    const s = agent().state;
    for (const state of AGENT_STATES) emit({ state }, s === state ? 1 : 0);
  });
  liveGauge(reg, 'meshd_control_error', '1 while the last request to the coordination server failed', [], (emit) => emit({}, agent().lastError === null ? 0 : 1));
  liveGauge(reg, 'meshd_control_last_contact_timestamp_seconds', 'Unix time of the last answer from the coordination server (once there was one)', [], (emit) => {
    const t = agent().lastContact;
    if (t) emit({}, t / 1000);
  });
  liveGauge(reg, 'meshd_netmap_peer_online', '1 if the coordination server reports the peer online', PEER_LABELS, (emit) => {
    for (const p of agent().peers) if (p.online !== undefined) emit({ public_key: p.publicKey, name: p.name }, p.online ? 1 : 0);
  });
  liveCounter(reg, 'meshd_filter_inbound_packets_total', 'Decrypted inbound packets by packet filter verdict', ['verdict'], (emit) => {
    const s = f();
    emit({ verdict: 'accept' }, s.accept);
    emit({ verdict: 'filtered' }, s.filtered);
    emit({ verdict: 'malformed' }, s.malformed);
  });
  liveCounter(reg, 'meshd_filter_accepted_packets_total', 'Accepted inbound packets that no rule was needed for, by kind', ['kind'], (emit) => {
    const s = f();
    emit({ kind: 'reply' }, s.replies);
    emit({ kind: 'icmp_error' }, s.icmpErrors);
    emit({ kind: 'fragment' }, s.fragments);
  });
  liveCounter(reg, 'meshd_filter_outbound_packets_total', 'Outbound packets the filter tracked', [], (emit) => emit({}, f().outbound));
  liveGauge(reg, 'meshd_filter_flows', 'Tracked flows (all, and those the peer started)', ['direction'], (emit) => {
    const s = f();
    emit({ direction: 'all' }, s.flows);
    emit({ direction: 'inbound' }, s.inboundFlows);
  });
  liveGauge(reg, 'meshd_filter_flows_max', 'Capacity of the flow table', [], (emit) => emit({}, f().maxFlows));
  liveCounter(reg, 'meshd_filter_flow_evictions_total', 'Flows evicted because the table was full', [], (emit) => emit({}, f().evictions));
  liveCounter(reg, 'meshd_filter_flows_expired_total', 'Flows that timed out', [], (emit) => emit({}, f().expired));
  liveGauge(reg, 'meshd_filter_rules', 'Compiled packet filter rules in force', [], (emit) => emit({}, f().rules));
  liveGauge(reg, 'meshd_filter_permissive', '1 if the filter lets everything pass (no rules at all)', [], (emit) => emit({}, f().permissive));
}
