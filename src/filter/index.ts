// The inbound packet filter: stateful, allocation-free per packet.
export { PacketFilter, type FilterDrop, type FilterStats, type FilterVerdict, type PacketFilterOptions } from './filter.js';
export { compileRules, DEFAULT_PROTOS, RuleSet } from './rules.js';
export { DEFAULT_MAX_FLOWS, DEFAULT_TIMEOUTS, FlowTable, type FlowTableOptions, type FlowTimeouts } from './conntrack.js';
export {
  ECHO_SERVICE, ICMP_ECHO, ICMP_ERROR, ICMP_NONE, ICMP_OTHER, PacketTuple, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP,
  PROTO_TCP, PROTO_UDP, readPacket, readQuotedPacket, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
} from './packet.js';
