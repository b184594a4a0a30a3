/*
 * The native flow cache (flowcache.h). Two halves:
 *   - a packet reader that is packet.ts line for line (same checks, same order, same outcome
 *     for every input), written so that no read leaves [pkt, pkt + len);
 *   - the table of conntrack.ts: a fixed pool, a chained hash with a secret multiply-shift
 *     hash, two intrusive LRU lists (ours, theirs), the same add / evict / reclaim rules.
 *
 * Concurrency: one mutex around every table operation; parsing happens before taking it.
 * The lock-free hint path (meshd_flowcache_hint) reads only atomics: each slot has a reuse
 * sequence, bumped before the slot is released or its origin changes (a seqlock without
 * readers' retries), and last_seen / listed / state are atomics written under the lock with
 * release stores, read by the hint path with acquire loads: a reader that sees any value
 * written after a bump then sees the bump when it reads the sequence again. (No fences, so
 * that -fsanitize=thread can check it; on x86 these are plain moves.)
 * A hint hit stores last_seen at most once per millisecond and never moves the entry in its
 * LRU list; it is only taken while the entry was listed (moved to the front) within
 * LRU_RESOLUTION_MS, so the lists stay in LRU order to within that much.
 */
#include "flowcache.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* packet.ts */
enum { PROTO_ICMP = 1, PROTO_TCP = 6, PROTO_UDP = 17, PROTO_ICMPV6 = 58, PROTO_SCTP = 132 };
enum { EH_HOP_BY_HOP = 0, EH_ROUTING = 43, EH_FRAGMENT = 44, EH_AH = 51, EH_DEST_OPTS = 60 };
enum { MAX_EXT_HEADERS = 8 };
enum { TCP_FIN = 0x01, TCP_SYN = 0x02, TCP_RST = 0x04, TCP_ACK = 0x10 };
enum { ICMP_NONE = 0, ICMP_ECHO = 1, ICMP_ERROR = 2, ICMP_OTHER = 3 };
#define ECHO_SERVICE 0x10000u

/* conntrack.ts state bits */
enum { ST_INBOUND = 1, ST_FIN_OUT = 2, ST_FIN_IN = 4, ST_RST = 8 };
#define ST_CLOSED (ST_FIN_OUT | ST_FIN_IN)

/* Hint hits never move an entry in its LRU list; the lock does, at least this often. */
#define LRU_RESOLUTION_MS 100

/* The policy generation of a flow of theirs that JS has not admitted (never current). */
#define GEN_NONE UINT64_MAX

/* Key words: version << 8 | proto, local port, remote port, local address, remote address. */
#define KW 11

typedef struct tuple {
  uint8_t version, proto, icmp_kind, tcp_flags;
  bool fragment, has_ports;
  uint32_t sport, dport;
  const uint8_t *src, *dst; /* into the packet, 4 or 16 bytes */
  size_t l4, end;
} tuple;

typedef struct entry {
  uint32_t key[KW];
  uint32_t bucket;
  int32_t chain; /* next in the same bucket, or in the free list */
  int32_t prev, next; /* LRU list, most recent first */
  uint64_t gen;       /* policy generation it was admitted under (theirs) */
  _Atomic uint64_t seq; /* bumped before release or an origin change */
  _Atomic uint64_t last_seen;
  _Atomic uint64_t listed; /* when last moved to the front of its list */
  _Atomic uint8_t state;
} entry;

struct meshd_flowcache {
  pthread_mutex_t lock;
  uint32_t capacity, inbound_capacity;
  meshd_flowcache_timeouts timeouts;
  entry *e;        /* capacity + 2: the last two are the list heads, ours and theirs */
  int32_t *heads;  /* buckets */
  unsigned shift;  /* 64 - log2(buckets) */
  uint64_t mult[KW];
  int32_t free;
  uint32_t count, inbound_count;
  uint64_t evictions, expired;
  _Atomic uint64_t generation;
};

/* ---- packet reader: packet.ts ---- */

static inline uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }

static bool read_ip(const uint8_t *b, size_t off, size_t limit, tuple *t, bool quoted);

/* RFC 792 / RFC 4443 §2.1: type, code, checksum, then 4 bytes (echo: id, seq). */
static bool read_icmp(const uint8_t *b, size_t p, size_t left, tuple *t) {
  bool v6 = t->version == 6;
  /* ICMP inside IPv6 or ICMPv6 inside IPv4 is no control message of either. */
  if ((t->proto == PROTO_ICMPV6) != v6) return true;
  if (left < 8) return false;
  uint8_t type = b[p];
  uint32_t id = be16(b + p + 4);
  if (type == (v6 ? 128 : 8)) {
    t->icmp_kind = ICMP_ECHO;
    t->sport = id;
    t->dport = ECHO_SERVICE;
  } else if (type == (v6 ? 129 : 0)) {
    t->icmp_kind = ICMP_ECHO;
    t->sport = ECHO_SERVICE;
    t->dport = id;
  } else if (v6 ? type >= 1 && type <= 4 : type == 3 || type == 11 || type == 12) {
    t->icmp_kind = ICMP_ERROR;
  } else {
    t->icmp_kind = ICMP_OTHER;
  }
  return true;
}

/* Ports, TCP flags, ICMP type. A first fragment must hold its whole transport header
 * (RFC 1858, RFC 7112); a quoted one only the first 8 bytes. p <= end. */
static bool read_transport(const uint8_t *b, size_t p, size_t end, tuple *t, bool quoted) {
  size_t left = end - p;
  switch (t->proto) {
  case PROTO_TCP:
    if (quoted) {
      if (left < 4) return false;
      if (left >= 14) t->tcp_flags = b[p + 13];
    } else {
      /* packet.ts reads the data offset first; with fewer than 20 bytes it fails either way. */
      if (left < 20) return false;
      size_t doff = (size_t)(b[p + 12] >> 4) << 2;
      if (doff < 20 || doff > left) return false;
      t->tcp_flags = b[p + 13];
    }
    break;
  case PROTO_UDP:
    if (left < (quoted ? 4u : 8u)) return false;
    break;
  case PROTO_SCTP:
    if (left < (quoted ? 4u : 12u)) return false;
    break;
  case PROTO_ICMP:
  case PROTO_ICMPV6:
    return read_icmp(b, p, left, t);
  default:
    return true;
  }
  t->sport = be16(b + p);
  t->dport = be16(b + p + 2);
  t->has_ports = true;
  return true;
}

/* RFC 791 options; loose and strict source routes (131, 137) are refused (RFC 7126). */
static bool ipv4_options_ok(const uint8_t *b, size_t p, size_t end) {
  while (p < end) {
    uint8_t type = b[p];
    if (type == 0) return true;
    if (type == 1) {
      p++;
      continue;
    }
    if (p + 1 >= end) return false;
    size_t len = b[p + 1];
    if (len < 2 || len > end - p || type == 131 || type == 137) return false;
    p += len;
  }
  return true;
}

static bool read_ipv4(const uint8_t *b, size_t off, size_t limit, tuple *t, bool quoted) {
  size_t ihl = (size_t)(b[off] & 0x0f) << 2;
  size_t total = be16(b + off + 2);
  if (ihl < 20 || total < ihl || ihl > limit - off) return false;
  if (!quoted && total > limit - off) return false;
  size_t end = quoted ? limit : off + total;
  if (ihl > 20 && !ipv4_options_ok(b, off + 20, off + ihl)) return false;
  uint32_t frag_offset = be16(b + off + 6) & 0x1fff;
  uint8_t proto = b[off + 9];
  t->src = b + off + 12;
  t->dst = b + off + 16;
  t->version = 4;
  t->proto = proto;
  t->l4 = off + ihl;
  t->end = end;
  if (frag_offset != 0) {
    /* RFC 1858 §3.2: a TCP fragment at offset 8 can only be an attempt to rewrite flags. */
    if (frag_offset == 1 && proto == PROTO_TCP) return false;
    t->fragment = true;
    return true;
  }
  return read_transport(b, off + ihl, end, t, quoted);
}

static bool read_ipv6(const uint8_t *b, size_t off, size_t limit, tuple *t, bool quoted) {
  if (limit - off < 40) return false;
  size_t payload = be16(b + off + 4);
  if (!quoted && payload > limit - off - 40) return false;
  size_t end = quoted ? limit : off + 40 + payload;
  t->src = b + off + 8;
  t->dst = b + off + 24;
  t->version = 6;
  uint8_t next = b[off + 6];
  size_t p = off + 40; /* grows by at most 8 x 2048: no overflow */
  for (int n = 0;; n++) {
    if (next != EH_HOP_BY_HOP && next != EH_ROUTING && next != EH_DEST_OPTS &&
        next != EH_FRAGMENT && next != EH_AH)
      break;
    /* §4.1: hop-by-hop only first; a long chain is an evasion attempt. */
    if ((next == EH_HOP_BY_HOP && n > 0) || n >= MAX_EXT_HEADERS) return false;
    if (p + 8 > end) return false;
    if (next == EH_FRAGMENT) {
      uint32_t frag_offset = be16(b + p + 2) >> 3;
      next = b[p];
      p += 8;
      if (frag_offset != 0) {
        t->proto = next;
        t->l4 = p;
        t->end = end;
        t->fragment = true;
        return true;
      }
      continue;
    }
    /* §4.4: segments left would carry the packet past the destination checked. */
    if (next == EH_ROUTING && b[p + 3] != 0) return false;
    size_t len = next == EH_AH ? (size_t)(b[p + 1] + 2) << 2 : (size_t)(b[p + 1] + 1) << 3;
    next = b[p];
    p += len;
  }
  if (p > end) return false;
  t->proto = next;
  t->l4 = p;
  t->end = end;
  return read_transport(b, p, end, t, quoted);
}

/* b[off, limit) with limit within the buffer. */
static bool read_ip(const uint8_t *b, size_t off, size_t limit, tuple *t, bool quoted) {
  memset(t, 0, sizeof *t);
  if (off > limit || limit - off < 20) return false;
  uint8_t version = b[off] >> 4;
  if (version == 4) return read_ipv4(b, off, limit, t, quoted);
  if (version == 6) return read_ipv6(b, off, limit, t, quoted);
  return false;
}

/* Whether a tuple opens / matches a flow (filter.ts `trackable`). */
static inline bool trackable(const tuple *t) {
  return !t->fragment && t->icmp_kind != ICMP_ERROR && t->icmp_kind != ICMP_OTHER;
}

/* ---- table: conntrack.ts ---- */

/* Oriented local -> remote: as is for a packet we send (or quote), reversed for one we get. */
static void load_key(const tuple *t, bool reversed, uint32_t k[KW]) {
  const uint8_t *local = reversed ? t->dst : t->src;
  const uint8_t *remote = reversed ? t->src : t->dst;
  k[0] = (uint32_t)t->version << 8 | t->proto;
  k[1] = reversed ? t->dport : t->sport;
  k[2] = reversed ? t->sport : t->dport;
  if (t->version == 4) {
    memcpy(&k[3], local, 4);
    memcpy(&k[7], remote, 4);
    k[4] = k[5] = k[6] = k[8] = k[9] = k[10] = 0;
  } else {
    memcpy(&k[3], local, 16);
    memcpy(&k[7], remote, 16);
  }
}

static inline uint64_t hash_key(const meshd_flowcache *fc, const uint32_t k[KW]) {
  uint64_t h = 0;
  for (int i = 0; i < KW; i++) h += (uint64_t)k[i] * fc->mult[i];
  return h;
}

static inline bool key_eq(const uint32_t a[KW], const uint32_t b[KW]) {
  return memcmp(a, b, KW * sizeof(uint32_t)) == 0;
}

static inline uint64_t ld(_Atomic uint64_t *p) { return atomic_load_explicit(p, memory_order_relaxed); }
static inline void st(_Atomic uint64_t *p, uint64_t v) { atomic_store_explicit(p, v, memory_order_release); }
static inline uint8_t ld8(_Atomic uint8_t *p) { return atomic_load_explicit(p, memory_order_relaxed); }
static inline void st8(_Atomic uint8_t *p, uint8_t v) { atomic_store_explicit(p, v, memory_order_release); }

static uint32_t timeout_of(const meshd_flowcache *fc, uint32_t key0, uint8_t st) {
  uint32_t proto = key0 & 0xff;
  if (proto == PROTO_TCP)
    return (st & ST_RST) || (st & ST_CLOSED) == ST_CLOSED ? fc->timeouts.tcp_closing : fc->timeouts.tcp;
  if (proto == PROTO_UDP) return fc->timeouts.udp;
  if (proto == PROTO_ICMP || proto == PROTO_ICMPV6) return fc->timeouts.icmp;
  return fc->timeouts.other;
}

/* Signed: threads pass their own clock readings, which may be a little behind last_seen. */
static inline bool idle_at(const meshd_flowcache *fc, entry *e, uint64_t now) {
  return (int64_t)(now - ld(&e->last_seen)) > (int64_t)timeout_of(fc, e->key[0], ld8(&e->state));
}

static inline int32_t head_ours(const meshd_flowcache *fc) { return (int32_t)fc->capacity; }
static inline int32_t head_theirs(const meshd_flowcache *fc) { return (int32_t)fc->capacity + 1; }

static inline void unlink_entry(meshd_flowcache *fc, int32_t s) {
  int32_t p = fc->e[s].prev, n = fc->e[s].next;
  fc->e[p].next = n;
  fc->e[n].prev = p;
}

static inline void push_front(meshd_flowcache *fc, int32_t s, int32_t head) {
  int32_t n = fc->e[head].next;
  fc->e[head].next = s;
  fc->e[s].prev = head;
  fc->e[s].next = n;
  fc->e[n].prev = s;
}

/* Before any change to the slot (seqlock write side; the release stores that follow order it). */
static inline void bump_seq(entry *e) { atomic_fetch_add_explicit(&e->seq, 1, memory_order_relaxed); }

static void release(meshd_flowcache *fc, int32_t s) {
  entry *e = &fc->e[s];
  bump_seq(e);
  unlink_entry(fc, s);
  uint32_t b = e->bucket;
  if (fc->heads[b] == s) {
    fc->heads[b] = e->chain;
  } else {
    int32_t p = fc->heads[b];
    while (fc->e[p].chain != s) p = fc->e[p].chain;
    fc->e[p].chain = e->chain;
  }
  e->chain = fc->free;
  fc->free = s;
  fc->count--;
  if (ld8(&e->state) & ST_INBOUND) fc->inbound_count--;
}

/* The live entry for k, or -1; an idle one found on the way is reclaimed. */
static int32_t find(meshd_flowcache *fc, const uint32_t k[KW], uint32_t bucket, uint64_t now) {
  for (int32_t s = fc->heads[bucket]; s >= 0; s = fc->e[s].chain) {
    if (!key_eq(fc->e[s].key, k)) continue;
    if (idle_at(fc, &fc->e[s], now)) {
      fc->expired++;
      release(fc, s);
      return -1;
    }
    return s;
  }
  return -1;
}

static bool reclaim_tail(meshd_flowcache *fc, int32_t head, uint64_t now) {
  int32_t s = fc->e[head].prev;
  if (s == head || !idle_at(fc, &fc->e[s], now)) return false;
  fc->expired++;
  release(fc, s);
  return true;
}

static void evict(meshd_flowcache *fc, int32_t s, uint64_t now) {
  if (idle_at(fc, &fc->e[s], now)) fc->expired++;
  else fc->evictions++;
  release(fc, s);
}

static int32_t add(meshd_flowcache *fc, const uint32_t k[KW], uint32_t bucket, uint64_t now,
                   bool inbound) {
  int32_t ours = head_ours(fc), theirs = head_theirs(fc);
  /* Reclaim what has gone idle at the cold ends first, so it is not counted as evicted. */
  reclaim_tail(fc, ours, now);
  reclaim_tail(fc, theirs, now);
  if (inbound && fc->inbound_count >= fc->inbound_capacity) {
    evict(fc, fc->e[theirs].prev, now);
  } else if (fc->free < 0) {
    int32_t a = fc->e[ours].prev, b = fc->e[theirs].prev;
    bool take_b = a == ours || (b != theirs && ld(&fc->e[b].last_seen) < ld(&fc->e[a].last_seen));
    evict(fc, take_b ? b : a, now);
  }
  int32_t s = fc->free;
  entry *e = &fc->e[s];
  fc->free = e->chain;
  memcpy(e->key, k, sizeof e->key);
  e->bucket = bucket;
  e->chain = fc->heads[bucket];
  fc->heads[bucket] = s;
  e->gen = atomic_load_explicit(&fc->generation, memory_order_relaxed);
  st8(&e->state, inbound ? ST_INBOUND : 0);
  st(&e->last_seen, now);
  st(&e->listed, now);
  push_front(fc, s, inbound ? theirs : ours);
  fc->count++;
  if (inbound) fc->inbound_count++;
  return s;
}

/* A packet of the flow went by: it becomes the most recently used. */
static void touch(meshd_flowcache *fc, int32_t s, uint64_t now) {
  entry *e = &fc->e[s];
  if ((int64_t)(now - ld(&e->last_seen)) > 0) st(&e->last_seen, now);
  st(&e->listed, now);
  unlink_entry(fc, s);
  push_front(fc, s, ld8(&e->state) & ST_INBOUND ? head_theirs(fc) : head_ours(fc));
}

/* Notes a TCP packet's FIN / RST (a bare SYN reopens a reused tuple). */
static void tcp_flags(entry *e, uint8_t flags, bool outbound) {
  uint8_t s = ld8(&e->state);
  if ((flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) s &= ST_INBOUND;
  if (flags & TCP_RST) s |= ST_RST;
  if (flags & TCP_FIN) s |= outbound ? ST_FIN_OUT : ST_FIN_IN;
  st8(&e->state, s);
}

/* JS says the flow is theirs (or ours): move it between the lists, keeping its place in time. */
static void set_origin(meshd_flowcache *fc, int32_t s, bool inbound, uint64_t now) {
  entry *e = &fc->e[s];
  uint8_t st_ = ld8(&e->state);
  if (((st_ & ST_INBOUND) != 0) == inbound) return;
  /* Theirs keep to their share here too. */
  if (inbound && fc->inbound_count >= fc->inbound_capacity) evict(fc, fc->e[head_theirs(fc)].prev, now);
  bump_seq(e);
  st8(&e->state, inbound ? st_ | ST_INBOUND : st_ & ~ST_INBOUND);
  if (inbound) fc->inbound_count++;
  else fc->inbound_count--;
  unlink_entry(fc, s);
  push_front(fc, s, inbound ? head_theirs(fc) : head_ours(fc));
}

/* ---- hints ---- */

static inline unsigned way_of(uint64_t h) { return (unsigned)(h >> 32) & (MESHD_FC_HINT_WAYS - 1); }

static void hint_take(meshd_flowcache_hint *hint, unsigned w, const uint32_t k[KW], int32_t s,
                      const entry *e) {
  if (hint == NULL) return;
  memcpy(hint->way[w].key, k, sizeof hint->way[w].key);
  hint->way[w].slot = (uint32_t)s;
  hint->way[w].seq = atomic_load_explicit(&e->seq, memory_order_relaxed);
  hint->way[w].ours = !(atomic_load_explicit(&e->state, memory_order_relaxed) & ST_INBOUND);
  hint->way[w].generation = e->gen;
}

/*
 * Whether the hinted flow is still the slot's, live, listed recently, and this packet changes
 * nothing but last_seen. Returns the way's `ours` + 1 (1 theirs, 2 ours) or 0 for "take the
 * lock". `need_gen`: flows they started count only if admitted under the current policy.
 */
static int hint_hit(meshd_flowcache *fc, meshd_flowcache_hint *hint, unsigned w,
                    const uint32_t k[KW], const tuple *t, uint64_t now, bool need_gen) {
  if (hint == NULL) return 0;
  struct meshd_flowcache_hint_way *h = &hint->way[w];
  if (h->seq == 0 || !key_eq(h->key, k)) return 0;
  if (t->proto == PROTO_TCP && (t->tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST))) return 0;
  if (need_gen && !h->ours && h->generation != atomic_load_explicit(&fc->generation, memory_order_acquire))
    return 0;
  entry *e = &fc->e[h->slot];
  if (atomic_load_explicit(&e->seq, memory_order_acquire) != h->seq) return 0;
  uint64_t seen = atomic_load_explicit(&e->last_seen, memory_order_acquire);
  uint64_t listed = atomic_load_explicit(&e->listed, memory_order_acquire);
  uint8_t state = atomic_load_explicit(&e->state, memory_order_acquire);
  if (atomic_load_explicit(&e->seq, memory_order_relaxed) != h->seq) return 0;
  if ((int64_t)(now - seen) > (int64_t)timeout_of(fc, k[0], state)) return 0;
  if ((int64_t)(now - listed) > LRU_RESOLUTION_MS) return 0;
  /* At most one store per ms; a CAS so a refresh racing a reuse cannot stamp a new flow. */
  if ((int64_t)(now - seen) > 0)
    atomic_compare_exchange_strong_explicit(&e->last_seen, &seen, now, memory_order_relaxed,
                                            memory_order_relaxed);
  hint->hits++;
  return h->ours ? 2 : 1;
}

/* ---- API ---- */

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void clear_locked(meshd_flowcache *fc) {
  for (uint32_t i = 0; i < fc->capacity; i++) {
    bump_seq(&fc->e[i]);
    fc->e[i].chain = i + 1 < fc->capacity ? (int32_t)i + 1 : -1;
  }
  for (size_t b = 0; b <= (UINT64_MAX >> fc->shift); b++) fc->heads[b] = -1;
  fc->free = 0;
  fc->count = 0;
  fc->inbound_count = 0;
  for (int32_t h = head_ours(fc); h <= head_theirs(fc); h++) fc->e[h].prev = fc->e[h].next = h;
}

meshd_flowcache *meshd_flowcache_new(uint32_t max_flows, uint32_t max_inbound,
                                     const meshd_flowcache_timeouts *timeouts, uint64_t hash_seed) {
  uint32_t cap = max_flows ? max_flows : MESHD_FC_DEFAULT_MAX_FLOWS;
  uint32_t in_cap = max_inbound ? max_inbound : (cap >> 1 ? cap >> 1 : 1);
  if (cap > MESHD_FC_MAX_FLOWS_LIMIT || in_cap > cap) {
    errno = EINVAL;
    return NULL;
  }
  unsigned bits = 1;
  while ((1u << bits) < cap) bits++;
  meshd_flowcache *fc = calloc(1, sizeof *fc);
  if (fc == NULL) return NULL;
  fc->e = calloc((size_t)cap + 2, sizeof *fc->e);
  fc->heads = malloc(sizeof *fc->heads << bits);
  if (fc->e == NULL || fc->heads == NULL || pthread_mutex_init(&fc->lock, NULL) != 0) {
    free(fc->e);
    free(fc->heads);
    free(fc);
    errno = ENOMEM;
    return NULL;
  }
  fc->capacity = cap;
  fc->inbound_capacity = in_cap;
  fc->timeouts = timeouts ? *timeouts : MESHD_FC_DEFAULT_TIMEOUTS;
  fc->shift = 64 - bits;
  for (int i = 0; i < KW; i++) fc->mult[i] = splitmix64(&hash_seed) | 1;
  /* Sequences start at 1: 0 marks an empty hint way. */
  for (uint32_t i = 0; i < cap; i++) atomic_init(&fc->e[i].seq, 1);
  clear_locked(fc);
  return fc;
}

void meshd_flowcache_free(meshd_flowcache *fc) {
  if (fc == NULL) return;
  pthread_mutex_destroy(&fc->lock);
  free(fc->e);
  free(fc->heads);
  free(fc);
}

int meshd_flowcache_outbound(meshd_flowcache *fc, meshd_flowcache_hint *hint, const uint8_t *pkt,
                             size_t len, uint64_t now) {
  tuple t;
  if (!read_ip(pkt, 0, len, &t, false)) return MESHD_FC_MALFORMED;
  /* Fragments and ICMP other than echo open no flow (filter.ts outbound()). */
  if (!trackable(&t)) return MESHD_FC_OUT_UNTRACKED;
  uint32_t k[KW];
  load_key(&t, false, k);
  uint64_t h = hash_key(fc, k);
  unsigned w = way_of(h);
  /* Ours, or theirs whatever the policy: our packets refresh both. */
  if (hint_hit(fc, hint, w, k, &t, now, false)) return MESHD_FC_OUT_KNOWN;
  uint32_t bucket = (uint32_t)(h >> fc->shift);
  int rc = MESHD_FC_OUT_KNOWN;
  pthread_mutex_lock(&fc->lock);
  int32_t s = find(fc, k, bucket, now);
  if (s < 0) {
    s = add(fc, k, bucket, now, false);
    rc = MESHD_FC_OUT_NEW;
  } else {
    touch(fc, s, now);
  }
  if (t.proto == PROTO_TCP) tcp_flags(&fc->e[s], t.tcp_flags, true);
  hint_take(hint, w, k, s, &fc->e[s]);
  pthread_mutex_unlock(&fc->lock);
  return rc;
}

/*
 * filter.ts aboutTrackedFlow(): the invoking packet starts 8 bytes into the ICMP message,
 * was sent by us (its source is the error's destination) and is local -> remote as quoted.
 * Any entry counts, whoever started it, as in JS; the error refreshes nothing.
 */
static bool about_tracked_flow(meshd_flowcache *fc, const uint8_t *pkt, const tuple *t,
                               uint64_t now) {
  tuple q;
  if (!read_ip(pkt, t->l4 + 8, t->end, &q, true)) return false;
  if (q.version != t->version || !trackable(&q)) return false;
  if (memcmp(q.src, t->dst, t->version == 4 ? 4 : 16) != 0) return false;
  uint32_t k[KW];
  load_key(&q, false, k);
  uint32_t bucket = (uint32_t)(hash_key(fc, k) >> fc->shift);
  pthread_mutex_lock(&fc->lock);
  bool found = find(fc, k, bucket, now) >= 0;
  pthread_mutex_unlock(&fc->lock);
  return found;
}

int meshd_flowcache_inbound(meshd_flowcache *fc, meshd_flowcache_hint *hint, const uint8_t *pkt,
                            size_t len, uint64_t now) {
  tuple t;
  if (!read_ip(pkt, 0, len, &t, false)) return MESHD_FC_MALFORMED;
  /* Nothing to match without the transport header; the first fragment was checked. */
  if (t.fragment) return MESHD_FC_IN_FRAGMENT;
  if (t.icmp_kind == ICMP_ERROR)
    return about_tracked_flow(fc, pkt, &t, now) ? MESHD_FC_IN_ICMP_ERROR : MESHD_FC_IN_UNKNOWN;
  if (t.icmp_kind == ICMP_OTHER) return MESHD_FC_IN_UNKNOWN;
  uint32_t k[KW];
  load_key(&t, true, k);
  uint64_t h = hash_key(fc, k);
  unsigned w = way_of(h);
  int hit = hint_hit(fc, hint, w, k, &t, now, true);
  if (hit) return hit == 2 ? MESHD_FC_IN_REPLY : MESHD_FC_IN_ADMITTED;
  uint32_t bucket = (uint32_t)(h >> fc->shift);
  int rc = MESHD_FC_IN_UNKNOWN;
  pthread_mutex_lock(&fc->lock);
  int32_t s = find(fc, k, bucket, now);
  if (s >= 0) {
    entry *e = &fc->e[s];
    if (!(ld8(&e->state) & ST_INBOUND))
      rc = MESHD_FC_IN_REPLY;
    else if (e->gen == atomic_load_explicit(&fc->generation, memory_order_relaxed))
      rc = MESHD_FC_IN_ADMITTED;
    /* Else theirs from before the policy changed: JS re-decides, and nothing is refreshed
     * unless it accepts (filter.ts touches only after rules.allows). */
    if (rc != MESHD_FC_IN_UNKNOWN) {
      touch(fc, s, now);
      if (t.proto == PROTO_TCP) tcp_flags(e, t.tcp_flags, false);
      hint_take(hint, w, k, s, e);
    }
  }
  pthread_mutex_unlock(&fc->lock);
  return rc;
}

int meshd_flowcache_admit(meshd_flowcache *fc, const uint8_t *pkt, size_t len, uint64_t now,
                          unsigned flags) {
  tuple t;
  if (!read_ip(pkt, 0, len, &t, false)) return MESHD_FC_MALFORMED;
  if (!trackable(&t)) return MESHD_FC_ADMIT_UNTRACKED;
  bool sent = flags & MESHD_FC_ADMIT_SENT;
  bool inbound = !(flags & MESHD_FC_ADMIT_OURS);
  uint32_t k[KW];
  load_key(&t, !sent, k);
  uint32_t bucket = (uint32_t)(hash_key(fc, k) >> fc->shift);
  int rc = MESHD_FC_ADMIT_UPDATED;
  pthread_mutex_lock(&fc->lock);
  int32_t s = find(fc, k, bucket, now);
  bool was_theirs = false;
  if (s < 0) {
    s = add(fc, k, bucket, now, inbound);
    rc = MESHD_FC_ADMIT_ADDED;
  } else {
    was_theirs = ld8(&fc->e[s].state) & ST_INBOUND;
    set_origin(fc, s, inbound, now);
    touch(fc, s, now);
  }
  entry *e = &fc->e[s];
  if (!sent) {
    /* Admitted under the policy in force now; hints taken earlier see the new generation. */
    e->gen = atomic_load_explicit(&fc->generation, memory_order_relaxed);
  } else if (inbound && !was_theirs) {
    /* Theirs, but no packet of theirs was decided: JS decides the next one. */
    e->gen = GEN_NONE;
  }
  if (t.proto == PROTO_TCP) tcp_flags(e, t.tcp_flags, sent);
  pthread_mutex_unlock(&fc->lock);
  return rc;
}

void meshd_flowcache_forget_inbound(meshd_flowcache *fc) {
  pthread_mutex_lock(&fc->lock);
  atomic_fetch_add_explicit(&fc->generation, 1, memory_order_release);
  pthread_mutex_unlock(&fc->lock);
}

void meshd_flowcache_clear(meshd_flowcache *fc) {
  pthread_mutex_lock(&fc->lock);
  clear_locked(fc);
  pthread_mutex_unlock(&fc->lock);
}

void meshd_flowcache_get_stats(meshd_flowcache *fc, meshd_flowcache_stats *out) {
  pthread_mutex_lock(&fc->lock);
  out->capacity = fc->capacity;
  out->inbound_capacity = fc->inbound_capacity;
  out->flows = fc->count;
  out->inbound_flows = fc->inbound_count;
  out->evictions = fc->evictions;
  out->expired = fc->expired;
  out->generation = atomic_load_explicit(&fc->generation, memory_order_relaxed);
  pthread_mutex_unlock(&fc->lock);
}
