/*
 * flowcache: the native datapath's bounded cache of flows the policy filter allows, so that
 * established traffic never leaves C. The JS PacketFilter (src/filter/filter.ts) stays the
 * authority; this mirrors its flow table (src/filter/conntrack.ts) and packet reader
 * (src/filter/packet.ts) for what they key on, and answers "known flow?" without JS:
 *
 *   TX (TUN -> tunnel)    meshd_flowcache_outbound(): records or refreshes the flow of every
 *                         packet we send; NEW means tell JS once (its filter's outbound()).
 *   RX (tunnel -> TUN)    meshd_flowcache_inbound(): accepts replies to our flows, flows JS
 *                         admitted under the current policy, ICMP errors about tracked flows,
 *                         non-first fragments; UNKNOWN goes to JS (PacketFilter.inbound).
 *   JS                    meshd_flowcache_admit() after JS accepted an UNKNOWN packet;
 *                         meshd_flowcache_forget_inbound() when the policy changes.
 *
 * Keys, as in conntrack.ts: IP version, protocol, local and remote port, local and remote
 * address, oriented local -> remote (a received packet is reversed). TCP, UDP, SCTP use their
 * ports; ICMP/ICMPv6 echo uses the identifier against ECHO_SERVICE (a request is id ->
 * 0x10000, its reply 0x10000 -> id, so only a reply to our request matches our flow); every
 * other protocol (and ICMP in the other family's IP) is keyed by addresses alone.
 *
 * Bounds: a fixed pool allocated by meshd_flowcache_new(), nothing allocated afterwards.
 * Flows the other side started hold at most max_inbound entries, so they cannot flush ours;
 * a full pool recycles its least recently used entry (counted in `evictions`); idle entries
 * are reclaimed when met (counted in `expired`). Time is the caller's monotonic clock in ms.
 *
 * Threads: any function may be called from any thread, concurrently (TX, RX and JS threads),
 * except new/free. One mutex guards the table; the packet is parsed outside it, and a hit
 * through a caller's meshd_flowcache_hint does not take it at all (see below).
 *
 * Pure C, no I/O, no Node-API: tested standalone by native/test/flowcache_test.c.
 */
#ifndef MESHD_FLOWCACHE_H
#define MESHD_FLOWCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESHD_FC_DEFAULT_MAX_FLOWS 65536u
#define MESHD_FC_MAX_FLOWS_LIMIT (1u << 24)

/* Idle timeouts in ms after the last packet either way (conntrack.ts DEFAULT_TIMEOUTS). */
typedef struct meshd_flowcache_timeouts {
  uint32_t tcp;         /* 5 min */
  uint32_t tcp_closing; /* 30 s, once a RST, or a FIN each way, has been seen */
  uint32_t udp;         /* 60 s */
  uint32_t icmp;        /* 30 s, ICMP and ICMPv6 */
  uint32_t other;       /* 60 s, any other protocol */
} meshd_flowcache_timeouts;

#define MESHD_FC_DEFAULT_TIMEOUTS ((meshd_flowcache_timeouts){300000, 30000, 60000, 30000, 60000})

/* Results. Negative: the packet does not parse (the caller counts it as invalidInnerPacket,
 * JS's 'malformed'). For inbound(), accept iff > 0. */
enum {
  MESHD_FC_MALFORMED = -1,

  /* outbound() */
  MESHD_FC_OUT_KNOWN = 0,     /* a tracked flow, refreshed */
  MESHD_FC_OUT_NEW = 1,       /* a flow recorded now as ours: tell JS (once) */
  MESHD_FC_OUT_UNTRACKED = 2, /* opens no flow (fragment, ICMP error or informational) */

  /* inbound() */
  MESHD_FC_IN_UNKNOWN = 0,    /* not decidable here: to JS (slow path) */
  MESHD_FC_IN_REPLY = 1,      /* a flow we started: accepted, refreshed */
  MESHD_FC_IN_ADMITTED = 2,   /* a flow JS admitted under the current policy: accepted */
  MESHD_FC_IN_ICMP_ERROR = 3, /* an ICMP error quoting a packet of a tracked flow: accepted */
  MESHD_FC_IN_FRAGMENT = 4,   /* a non-first fragment: accepted, as filter.ts does */

  /* admit() */
  MESHD_FC_ADMIT_UPDATED = 0,   /* the flow was tracked: now marked as JS says, refreshed */
  MESHD_FC_ADMIT_ADDED = 1,     /* a new entry */
  MESHD_FC_ADMIT_UNTRACKED = 2, /* nothing to track (fragment, ICMP error or informational) */
};

/* admit() flags. */
#define MESHD_FC_ADMIT_SENT 1u /* the packet is one this node sent (default: one it received) */
#define MESHD_FC_ADMIT_OURS 2u /* JS tracks the flow as ours (default: theirs, as admitted) */

typedef struct meshd_flowcache meshd_flowcache;

typedef struct meshd_flowcache_stats {
  uint32_t capacity;         /* max_flows */
  uint32_t inbound_capacity; /* max_inbound */
  uint32_t flows;            /* entries in use (idle ones count until reclaimed) */
  uint32_t inbound_flows;    /* of which the other side started */
  uint64_t evictions;        /* live entries dropped to make room */
  uint64_t expired;          /* entries found idle past their timeout and reclaimed */
  uint64_t generation;       /* policy generation: forget_inbound() calls so far */
} meshd_flowcache_stats;

/*
 * A small per-thread cache of recent hits. Give each thread that calls outbound()/inbound()
 * its own, zeroed (or meshd_flowcache_hint_init), used with one flowcache only (init it again
 * if the cache is replaced); NULL works too, always taking the lock. A hint entry remembers a
 * slot and that slot's reuse sequence: while the sequence is unchanged the slot still holds
 * that flow, so a packet of an established flow is decided with a few atomic loads and at
 * most one store per millisecond. Packets that change TCP state (SYN, FIN, RST) always take
 * the lock. The answers are the same with or without hints; what differs is LRU order: a
 * hinted hit refreshes the flow's last-seen time but moves it to the front of its LRU list
 * at most every 100 ms, so a full table recycles an entry within 100 ms of the true least
 * recently used one (without hints: exactly conntrack.ts's choice).
 */
#define MESHD_FC_HINT_WAYS 8
typedef struct meshd_flowcache_hint {
  struct meshd_flowcache_hint_way {
    uint64_t seq;        /* the slot's reuse sequence when taken; 0: empty */
    uint64_t generation; /* the entry's policy generation then (flows they started) */
    uint32_t key[11];
    uint32_t slot;
    uint32_t ours;       /* the flow's origin then (a change bumps the sequence) */
  } way[MESHD_FC_HINT_WAYS];
  uint64_t hits; /* packets decided through this hint, without the lock */
} meshd_flowcache_hint;

static inline void meshd_flowcache_hint_init(meshd_flowcache_hint *h) {
  for (int i = 0; i < MESHD_FC_HINT_WAYS; i++) h->way[i].seq = 0;
  h->hits = 0;
}

/*
 * max_flows: entries in all, 1..2^24 (0: 65,536). max_inbound: of which flows the other side
 * started may hold, 1..max_flows (0: half, at least 1). timeouts: NULL for the defaults.
 * hash_seed: must be secret random bits (getrandom()): it picks the hash, so that which
 * tuples share a bucket cannot be worked out from outside. NULL with errno EINVAL or ENOMEM.
 */
meshd_flowcache *meshd_flowcache_new(uint32_t max_flows, uint32_t max_inbound,
                                     const meshd_flowcache_timeouts *timeouts, uint64_t hash_seed);
void meshd_flowcache_free(meshd_flowcache *fc);

/* A packet this node sends into the tunnel (read from the TUN). MESHD_FC_OUT_*. */
int meshd_flowcache_outbound(meshd_flowcache *fc, meshd_flowcache_hint *hint, const uint8_t *pkt,
                             size_t len, uint64_t now_ms);

/* A decrypted packet from a peer (after the cryptokey-routing source check). MESHD_FC_IN_*. */
int meshd_flowcache_inbound(meshd_flowcache *fc, meshd_flowcache_hint *hint, const uint8_t *pkt,
                            size_t len, uint64_t now_ms);

/*
 * JS's word on the flow of `pkt`; JS is the authority, so the entry is created or refreshed
 * with the origin JS says, and its TCP state updated from the packet. flags:
 *   0                    a received packet JS's rules accepted: theirs, admitted under the
 *                        current policy (until the next forget_inbound()). The common case.
 *   MESHD_FC_ADMIT_OURS  a received packet JS accepted as a reply to a flow its table has as
 *                        ours (this table had lost it).
 *   MESHD_FC_ADMIT_SENT  a packet we sent, that outbound() reported OUT_NEW, whose flow JS's
 *                        table has as theirs (this table had lost it): it is made theirs but
 *                        not admitted, so its next inbound packet goes to JS. Without this,
 *                        replies to "our" flow would pass under any policy.
 * MESHD_FC_ADMIT_*.
 */
int meshd_flowcache_admit(meshd_flowcache *fc, const uint8_t *pkt, size_t len, uint64_t now_ms,
                          unsigned flags);

/*
 * The policy changed: flows the other side started are re-decided by JS at their next
 * inbound packet (inbound() says UNKNOWN; admit() revalidates those still allowed). They stay
 * in the table, as in conntrack.ts, so our packets of theirs refresh them and never make them
 * look like ours. Flows we started are untouched. O(1).
 */
void meshd_flowcache_forget_inbound(meshd_flowcache *fc);

/* Drops every entry (the filter went permissive); counters stay. */
void meshd_flowcache_clear(meshd_flowcache *fc);

void meshd_flowcache_get_stats(meshd_flowcache *fc, meshd_flowcache_stats *out);

#endif /* MESHD_FLOWCACHE_H */
