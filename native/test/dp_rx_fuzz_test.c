// sources: dp_core.c dp_tables.c dp_allowedips.c dp_events.c flowcache.c
// libs: -lcrypto -lpthread
/*
 * dp_rx_fuzz_test: the receive path (dp_rx_datagram) end to end over the real tables, run by
 * native/test/run.sh under -fsanitize=address,undefined (LeakSanitizer on). No Node, no I/O.
 *
 *   dp_rx_fuzz_test [iterations]     (default 20000, or DP_FUZZ_ITERS; seed: DP_TEST_SEED)
 *
 * A device of three peers, each with current/previous/next keypairs and allowed IPs, runs
 * twice: without a flow cache and with one. The test plays the remote peers: it seals with a
 * mirror of each keypair (our recv_key as its send key, our local index as its receiver).
 *   valid traffic   DELIVER with the exact inner bytes; the same datagram again is a
 *                   replayedCounter drop; a source outside the peer's allowed IPs, keepalives,
 *                   bad inner packets, handshake messages (exact and wrong lengths), reserved
 *                   bits, unknown indices, expiry by time and by counter, key confirmation
 *                   (once), roaming, the flow cache's verdict events, the event queue's bound
 *   keypair tables  re-setting keeps a session's replay window by local index, dropping one
 *                   unindexes it, thousands of rotations keep the index table bounded, peers
 *                   removed, dp_destroy frees everything (LeakSanitizer)
 *   hostile input   random datagrams and mutations of sealed ones (bit flips, truncation,
 *                   extension, header/index/counter edits, splices): each input gives exactly
 *                   the action its header decides, DELIVER only for an authentic datagram
 *                   byte for byte, and a forgery never moves the replay window
 * Every datagram is handed over in a heap buffer of exactly its length (ASan sees overreads),
 * and every call's drop counters must account for its result (one reason per DROP).
 */
#include "datapath.h"
#include "flowcache.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* Distinct local indices: a bijection of a sequence number. */
static uint32_t index_seq = 1;
static uint32_t fresh_index(void) {
  uint32_t x = index_seq++ * 0x9e3779b1u;
  x ^= x >> 16;
  x *= 0x85ebca6bu;
  x ^= x >> 13;
  x *= 0xc2b2ae35u;
  x ^= x >> 16;
  return x;
}

/* ------------------------------------------------------------------ the device */

#define NPEERS 3
#define MTU 1420
#define NOW0 1000000000ull

typedef struct tkey {
  bool present;
  uint32_t local, remote;
  uint8_t send[32], recv[32]; /* ours */
  uint64_t created;
  uint64_t next_counter; /* the remote's next send counter */
  bool confirmed;        /* a CONFIRM was seen for it */
} tkey;

typedef struct tpeer {
  uint32_t id;
  tkey k[3];
} tpeer;

static dp *D;
static tpeer P[NPEERS];
static EVP_CIPHER_CTX *CTX;
static meshd_flowcache_hint HINT;
static uint64_t now_ms = NOW0;
static const uint32_t peer_ids[NPEERS] = {1, 7, 42};

static tkey new_key(uint64_t created) {
  tkey k;
  memset(&k, 0, sizeof k);
  k.present = true;
  k.local = fresh_index();
  k.remote = (uint32_t)rnd();
  rnd_bytes(k.send, 32);
  rnd_bytes(k.recv, 32);
  k.created = created;
  k.next_counter = below(4) ? 0 : below(1000);
  return k;
}

/* Installs t->k[] as the peer's keypairs (as JS does, under the write lock). */
static void install(tpeer *t) {
  dp_keypair_spec spec[3];
  memset(spec, 0, sizeof spec);
  for (int s = 0; s < 3; s++) {
    if (!t->k[s].present) continue;
    spec[s].present = true;
    spec[s].local_index = t->k[s].local;
    spec[s].remote_index = t->k[s].remote;
    memcpy(spec[s].send_key, t->k[s].send, 32);
    memcpy(spec[s].recv_key, t->k[s].recv, 32);
    spec[s].created = t->k[s].created;
    spec[s].is_initiator = s != DP_NEXT;
    spec[s].sending_valid = s == DP_CURRENT;
  }
  pthread_rwlock_wrlock(&D->lock);
  int rc = dp_peer_set_keypairs(D, dp_peer_get(D, t->id), spec);
  pthread_rwlock_unlock(&D->lock);
  CHECK(rc == 0, "dp_peer_set_keypairs failed");
}

/* Peer i's allowed IPs: 10.(i+1).0.0/16, 10.(i+1).9.9/32 (inside it: LPM), fd00:0:0:(i+1)::/64. */
static void install_allowedips(void) {
  dp_aip_entry e[3 * NPEERS];
  memset(e, 0, sizeof e);
  for (int i = 0; i < NPEERS; i++) {
    e[3 * i] = (dp_aip_entry){.peer_id = P[i].id, .family = 4, .cidr = 16, .addr = {10, (uint8_t)(i + 1)}};
    e[3 * i + 1] = (dp_aip_entry){.peer_id = P[i].id, .family = 4, .cidr = 32, .addr = {10, (uint8_t)(i + 1), 9, 9}};
    e[3 * i + 2] = (dp_aip_entry){.peer_id = P[i].id, .family = 6, .cidr = 64, .addr = {0xfd, [7] = (uint8_t)(i + 1)}};
  }
  dp_allowedips *t = dp_allowedips_build(e, 3 * NPEERS);
  CHECK(t != NULL, "dp_allowedips_build");
  pthread_rwlock_wrlock(&D->lock);
  dp_set_allowedips(D, t);
  pthread_rwlock_unlock(&D->lock);
}

static void setup(bool flows) {
  D = dp_create(MTU);
  CHECK(D != NULL, "dp_create");
  D->ev_wake = NULL;
  if (flows) D->flows = meshd_flowcache_new(4096, 0, NULL, rnd());
  meshd_flowcache_hint_init(&HINT);
  for (int i = 0; i < NPEERS; i++) {
    memset(&P[i], 0, sizeof P[i]);
    P[i].id = peer_ids[i];
    CHECK(dp_peer_upsert(D, P[i].id) == 0, "dp_peer_upsert");
    for (int s = 0; s < 3; s++) P[i].k[s] = new_key(now_ms);
    install(&P[i]);
  }
  install_allowedips();
}

/* ------------------------------------------------------------------ packets */

typedef struct pkt {
  uint8_t b[DP_HEADER_LEN + 2048 + 64];
  size_t len; /* of the whole datagram once sealed; of the inner packet before */
} pkt;

/* An inner packet from peer i (src_ok) or from outside its allowed IPs, of about `size` bytes. */
static size_t make_inner(uint8_t *p, int i, bool v6, bool src_ok, size_t size) {
  if (v6) {
    size_t len = size < 48 ? 48 : size;
    memset(p, 0, 48);
    p[0] = 0x60;
    p[4] = (uint8_t)((len - 40) >> 8);
    p[5] = (uint8_t)(len - 40);
    p[6] = 17;
    p[7] = 64;
    p[8] = 0xfd;
    if (src_ok) p[15] = (uint8_t)(i + 1);
    else p[15] = (uint8_t)(below(2) ? 0x77 : ((i + 1) % NPEERS) + 1); /* nobody's, or another peer's */
    rnd_bytes(p + 16, 8);
    p[24] = 0xfd;
    p[25] = 0x99;
    p[39] = 1;
    rnd_bytes(p + 40, 4); /* ports */
    p[44] = (uint8_t)((len - 40) >> 8);
    p[45] = (uint8_t)(len - 40);
    rnd_bytes(p + 48, len - 48);
    return len;
  }
  size_t len = size < 28 ? 28 : size;
  memset(p, 0, 28);
  p[0] = 0x45;
  p[2] = (uint8_t)(len >> 8);
  p[3] = (uint8_t)len;
  p[8] = 64;
  p[9] = 17;
  if (src_ok) {
    p[12] = 10;
    p[13] = (uint8_t)(i + 1);
    p[14] = (uint8_t)rnd();
    p[15] = (uint8_t)rnd();
  } else if (below(2)) {
    p[12] = 192;
    p[13] = 168;
    p[14] = (uint8_t)rnd();
    p[15] = (uint8_t)rnd();
  } else {
    p[12] = 10;
    p[13] = (uint8_t)(((i + 1) % NPEERS) + 1);
    p[14] = 9;
    p[15] = 9;
  }
  p[16] = 10;
  p[17] = 200;
  p[19] = 1;
  rnd_bytes(p + 20, 4);
  p[24] = (uint8_t)((len - 20) >> 8);
  p[25] = (uint8_t)(len - 20);
  rnd_bytes(p + 28, len - 28);
  return len;
}

/* Seals inner[0..n) as peer i's keypair s would send it: the mirror keypair. */
static void seal(pkt *out, int i, int s, uint64_t counter, const uint8_t *inner, size_t n) {
  dp_keypair m;
  memset(&m, 0, sizeof m);
  memcpy(m.send_key, P[i].k[s].recv, 32);
  memcpy(m.recv_key, P[i].k[s].send, 32);
  m.local_index = P[i].k[s].remote;
  m.remote_index = P[i].k[s].local;
  memcpy(out->b + DP_HEADER_LEN, inner, n);
  out->len = dp_seal(CTX, &m, counter, out->b, n, MTU);
  CHECK(out->len == DP_HEADER_LEN + n + dp_padding(n, MTU) + DP_TAG_LEN, "dp_seal length %zu", out->len);
}

/* ------------------------------------------------------------------ receiving */

typedef struct rx_out {
  int action;
  int reason; /* the drop counted for a DROP; -1 otherwise */
  uint32_t peer_id;
  size_t len;
  uint8_t data[2048];
} rx_out;

static const char *drop_names[] = {
#define DP_DROP_NAME(name) #name,
    DP_DROPS(DP_DROP_NAME)};

static uint64_t rx_calls, rx_actions[3];

/* One datagram, in a heap buffer of exactly its length. Checks the accounting. */
static rx_out rx(const uint8_t *bytes, size_t len, const dp_endpoint *from) {
  uint64_t before[DP_DROP_COUNT];
  rx_out o;
  o.reason = -1;
  o.peer_id = UINT32_MAX;
  o.len = 0;
  for (int r = 0; r < DP_DROP_COUNT; r++) before[r] = atomic_load(&D->drops[r]);
  uint8_t *buf = malloc(len ? len : 1);
  if (len) memcpy(buf, bytes, len);
  dp_rx_result res;
  memset(&res, 0xa5, sizeof res);
  pthread_rwlock_rdlock(&D->lock);
  dp_rx_datagram(D, CTX, D->flows ? &HINT : NULL, buf, len, from, now_ms, &res);
  pthread_rwlock_unlock(&D->lock);
  o.action = res.action;
  rx_calls++;
  CHECK(res.action == DP_RX_DROP || res.action == DP_RX_DONE || res.action == DP_RX_DELIVER, "action %d", res.action);
  if (res.action >= 0 && res.action <= 2) rx_actions[res.action]++;
  if (res.action == DP_RX_DELIVER) {
    CHECK(res.peer != NULL, "DELIVER without a peer");
    CHECK(res.data == buf + DP_HEADER_LEN, "DELIVER data not at buf + 16");
    CHECK(len >= DP_HEADER_LEN + DP_TAG_LEN && res.len > 0 && res.len <= len - DP_HEADER_LEN - DP_TAG_LEN, "DELIVER len %zu of %zu",
          res.len, len);
    if (res.len <= sizeof o.data && res.data == buf + DP_HEADER_LEN) {
      memcpy(o.data, res.data, res.len);
      o.len = res.len;
    }
  }
  if (res.action != DP_RX_DROP && res.peer) o.peer_id = res.peer->id;
  /* Exactly one reason per DROP (eventQueueFull may come on top, from a ROAM or CONFIRM post,
   * or be the reason itself); none for DONE and DELIVER except a lost ROAM/CONFIRM event. */
  int counted = 0, reason = -1;
  for (int r = 0; r < DP_DROP_COUNT; r++) {
    uint64_t delta = atomic_load(&D->drops[r]) - before[r];
    if (r == DP_DROP_eventQueueFull) continue;
    CHECK(delta <= 1, "drop %s counted %llu times", drop_names[r], (unsigned long long)delta);
    if (delta) counted++, reason = r;
  }
  uint64_t full = atomic_load(&D->drops[DP_DROP_eventQueueFull]) - before[DP_DROP_eventQueueFull];
  if (res.action == DP_RX_DROP) {
    CHECK(counted == 1 || (counted == 0 && full >= 1), "DROP with %d reasons (+%llu queue full)", counted,
          (unsigned long long)full);
    o.reason = counted ? reason : DP_DROP_eventQueueFull;
  } else {
    CHECK(counted == 0, "action %d counted drop %s", res.action, reason >= 0 ? drop_names[reason] : "?");
  }
  free(buf);
  return o;
}

static void expect_drop(rx_out o, int reason, const char *what) {
  CHECK(o.action == DP_RX_DROP && o.reason == reason, "%s: action %d reason %s, want drop %s", what, o.action,
        o.reason >= 0 ? drop_names[o.reason] : "-", drop_names[reason]);
}

/* Events: take them all; count those of a kind (and check the first one's fields). */
static dp_event *events;
/* A CONFIRM seen (in a drain or a check) marks that keypair confirmed: no second one is due. */
static void note_confirms(const dp_event *e) {
  for (; e; e = e->next) {
    if (e->kind != DP_EV_CONFIRM) continue;
    for (int i = 0; i < NPEERS; i++)
      for (int s = 0; s < 3; s++)
        if (P[i].id == e->peer_id && P[i].k[s].present && P[i].k[s].local == e->arg) P[i].k[s].confirmed = true;
  }
}
static void drain(void) {
  note_confirms(events);
  dp_free_events(events);
  events = NULL;
  dp_event *e = dp_take_events(D);
  note_confirms(e);
  dp_free_events(e);
}
static void take(void) {
  dp_free_events(events);
  events = dp_take_events(D);
}
static int count_kind(int kind, const dp_event **first) {
  int n = 0;
  if (first) *first = NULL;
  for (const dp_event *e = events; e; e = e->next) {
    if (e->kind != kind) continue;
    if (n++ == 0 && first) *first = e;
  }
  return n;
}

static dp_endpoint endpoint(int which) {
  dp_endpoint ep;
  memset(&ep, 0, sizeof ep);
  if (which % 2 == 0) {
    ep.addr.v4.sin_family = AF_INET;
    ep.addr.v4.sin_port = htons((uint16_t)(51820 + which));
    ep.addr.v4.sin_addr.s_addr = htonl(0xc0000200u + (uint32_t)which);
    ep.len = sizeof ep.addr.v4;
  } else {
    ep.addr.v6.sin6_family = AF_INET6;
    ep.addr.v6.sin6_port = htons((uint16_t)(51820 + which));
    ep.addr.v6.sin6_addr.s6_addr[0] = 0x20;
    ep.addr.v6.sin6_addr.s6_addr[15] = (uint8_t)which;
    ep.len = sizeof ep.addr.v6;
  }
  return ep;
}

static bool ep_equal(const dp_endpoint *a, const dp_endpoint *b) {
  if (a->len != b->len || a->len == 0) return false;
  if (a->addr.sa.sa_family != b->addr.sa.sa_family) return false;
  if (a->addr.sa.sa_family == AF_INET)
    return a->addr.v4.sin_port == b->addr.v4.sin_port && a->addr.v4.sin_addr.s_addr == b->addr.v4.sin_addr.s_addr;
  return a->addr.v6.sin6_port == b->addr.v6.sin6_port && memcmp(&a->addr.v6.sin6_addr, &b->addr.v6.sin6_addr, 16) == 0;
}

/* ------------------------------------------------------------------ (a) valid traffic */

static int live_slot(int i) {
  for (;;) {
    int s = (int)below(3);
    if (P[i].k[s].present) return s;
  }
}

/* One authentic data packet with all its expectations. kind: 0 normal, 1 outside source,
 * 2 keepalive, 3 bad inner packet. */
static void valid_packet(int i, int s, int kind, bool admit) {
  tkey *k = &P[i].k[s];
  uint8_t inner[1500];
  size_t n = 0;
  bool v6 = below(2);
  if (kind == 0 || kind == 1) n = make_inner(inner, i, v6, kind == 0, below(1400));
  if (kind == 3) {
    n = 1 + below(200);
    rnd_bytes(inner, n);
    if (below(2)) inner[0] = (uint8_t)(0x50 | (inner[0] & 15)); /* version 5 */
    else if (n >= 20) inner[0] = 0x45, inner[2] = 0x7f, inner[3] = 0xff; /* total past the end */
    else inner[0] = 0x45;                                               /* shorter than a header */
  }
  bool flows = D->flows != NULL;
  if (flows && admit && kind == 0) meshd_flowcache_admit(D->flows, inner, n, now_ms, 0);

  pkt p;
  uint64_t counter = k->next_counter++;
  seal(&p, i, s, counter, inner, n);
  dp_endpoint from = endpoint((int)below(4)), was;
  const dp_endpoint *fromp = below(8) ? &from : NULL;
  dp_peer *peer = dp_peer_get(D, P[i].id);
  dp_peer_endpoint(peer, &was);
  uint64_t rx_packets = atomic_load(&peer->rx_packets);
  drain();

  rx_out o = rx(p.b, p.len, fromp);
  take();
  bool first_next = s == DP_NEXT && !k->confirmed;
  const dp_event *e;
  /* What every authenticated packet does. */
  CHECK(atomic_load(&peer->rx_packets) == rx_packets + 1, "rx_packets not counted");
  CHECK(atomic_load(&peer->t_auth_recv) == now_ms, "t_auth_recv");
  int roams = count_kind(DP_EV_ROAM, &e);
  if (fromp && !ep_equal(&was, fromp)) {
    CHECK(roams == 1 && e->peer_id == P[i].id && ep_equal(&e->from, fromp), "ROAM event (%d)", roams);
  } else {
    CHECK(roams == 0, "ROAM for a known endpoint");
  }
  if (fromp) {
    dp_endpoint now_ep;
    dp_peer_endpoint(peer, &now_ep);
    CHECK(ep_equal(&now_ep, fromp), "endpoint not roamed");
  }
  int confirms = count_kind(DP_EV_CONFIRM, &e);
  if (first_next) {
    CHECK(confirms == 1 && e->peer_id == P[i].id && e->arg == k->local, "CONFIRM event (%d)", confirms);
    k->confirmed = true;
  } else {
    CHECK(confirms == 0, "CONFIRM again (slot %d)", s);
  }

  if (kind == 2) {
    CHECK(o.action == DP_RX_DONE && o.peer_id == P[i].id, "keepalive: action %d", o.action);
  } else if (kind == 3) {
    expect_drop(o, DP_DROP_invalidInnerPacket, "bad inner packet");
  } else if (kind == 1) {
    expect_drop(o, DP_DROP_allowedIpsMismatch, "outside source");
  } else if (flows && !admit) {
    CHECK(o.action == DP_RX_DONE, "unknown flow: action %d, want DONE (verdict)", o.action);
    int verdicts = count_kind(DP_EV_VERDICT, &e);
    CHECK(verdicts == 1 && e->peer_id == P[i].id && e->len == n && memcmp(e->data, inner, n) == 0, "VERDICT event (%d)",
          verdicts);
  } else {
    CHECK(o.action == DP_RX_DELIVER && o.peer_id == P[i].id, "authentic packet: action %d reason %s", o.action,
          o.reason >= 0 ? drop_names[o.reason] : "-");
    CHECK(o.len == n && memcmp(o.data, inner, n) == 0, "delivered %zu bytes, sent %zu (or they differ)", o.len, n);
    CHECK(count_kind(DP_EV_VERDICT, NULL) == 0, "VERDICT for a delivered packet");
  }
  /* The same datagram again. */
  uint64_t replays = atomic_load(&D->drops[DP_DROP_replayedCounter]);
  expect_drop(rx(p.b, p.len, fromp), DP_DROP_replayedCounter, "replay");
  CHECK(atomic_load(&D->drops[DP_DROP_replayedCounter]) == replays + 1, "replayedCounter not counted");
}

static void handshake_messages(void) {
  static const size_t want[4] = {0, 148, 92, 64};
  uint8_t m[300];
  for (int type = 1; type <= 3; type++) {
    drain();
    rnd_bytes(m, sizeof m);
    m[0] = (uint8_t)type;
    m[1] = m[2] = m[3] = 0;
    dp_endpoint from = endpoint(type);
    rx_out o = rx(m, want[type], &from);
    CHECK(o.action == DP_RX_DONE, "handshake type %d: action %d", type, o.action);
    take();
    const dp_event *e;
    CHECK(count_kind(DP_EV_HANDSHAKE, &e) == 1 && e->len == want[type] && memcmp(e->data, m, want[type]) == 0 &&
              e->peer_id == UINT32_MAX && ep_equal(&e->from, &from),
          "HANDSHAKE event for type %d", type);
    /* Wrong lengths: one off either way, the other types' lengths, random ones. */
    size_t bad[] = {want[type] - 1, want[type] + 1, want[type % 3 + 1], 4, 32, 200, 4 + below(290)};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
      if (bad[b] == want[type]) continue;
      expect_drop(rx(m, bad[b], &from), DP_DROP_badLength, "handshake wrong length");
    }
    /* Reserved bytes. */
    for (int r = 1; r <= 3; r++) {
      m[r] = (uint8_t)(1 + below(255));
      expect_drop(rx(m, want[type], &from), DP_DROP_reservedNonZero, "reserved non-zero");
      m[r] = 0;
    }
  }
  drain();
  CHECK(count_kind(DP_EV_HANDSHAKE, NULL) == 0, "stray events");
  /* Other types. */
  for (int type = 0; type < 256; type++) {
    if (type >= 1 && type <= 4) continue;
    memset(m, 0, sizeof m);
    m[0] = (uint8_t)type;
    expect_drop(rx(m, below(2) ? 148 : 64, NULL), DP_DROP_badType, "bad type");
    m[2] = 1;
    expect_drop(rx(m, 100, NULL), DP_DROP_badType, "bad type, reserved set");
  }
  /* Short input. */
  for (size_t len = 0; len < 4; len++) expect_drop(rx(m, len, NULL), DP_DROP_truncated, "truncated");
  memset(m, 0, sizeof m);
  m[0] = 4;
  memcpy(m + 4, &P[0].k[DP_CURRENT].local, 4); /* a live index, little-endian on this host */
  for (size_t len = 4; len < DP_HEADER_LEN + DP_TAG_LEN; len++)
    expect_drop(rx(m, len, NULL), DP_DROP_badLength, "data shorter than header + tag");
  /* An index no keypair has. */
  uint32_t unknown = fresh_index();
  memcpy(m + 4, &unknown, 4);
  expect_drop(rx(m, 64, NULL), DP_DROP_unknownIndex, "unknown index");
  /* A live index, but garbage. */
  memcpy(m + 4, &P[1].k[DP_PREVIOUS].local, 4);
  expect_drop(rx(m, 100, NULL), DP_DROP_decryptFailed, "garbage under a live index");
}

/* The event queue's bounds: DP_EV_KIND_MAX handshakes are taken, the next are drops; a
 * handshake flood leaves the other kinds their room; a full queue drops them too. */
static void queue_bound(void) {
  uint8_t m[148];
  drain();
  memset(m, 0, sizeof m);
  m[0] = 1;
  for (uint32_t n = 0; n < DP_EV_KIND_MAX + 50; n++) {
    rx_out o = rx(m, sizeof m, NULL);
    if (n < DP_EV_KIND_MAX) CHECK(o.action == DP_RX_DONE, "handshake %u: action %d", n, o.action);
    else expect_drop(o, DP_DROP_eventQueueFull, "handshake share full");
  }
  CHECK(D->ev_count == DP_EV_KIND_MAX, "ev_count %u", D->ev_count);
  if (D->flows) {
    /* The verdict request for an unknown flow still has its own room... */
    uint8_t inner[200];
    size_t n = make_inner(inner, 0, false, true, 100);
    pkt p;
    seal(&p, 0, DP_CURRENT, P[0].k[DP_CURRENT].next_counter++, inner, n);
    CHECK(rx(p.b, p.len, NULL).action == DP_RX_DONE, "verdict next to a handshake flood");
    /* ...until the whole queue is full (control events fill the rest here). */
    while (dp_post(D, DP_EV_FATAL, UINT32_MAX, 0, NULL, NULL, 0)) {
    }
    CHECK(D->ev_count == DP_EV_MAX_COUNT, "ev_count %u after filling", D->ev_count);
    seal(&p, 0, DP_CURRENT, P[0].k[DP_CURRENT].next_counter++, inner, n);
    expect_drop(rx(p.b, p.len, NULL), DP_DROP_eventQueueFull, "verdict with the queue full");
  } else {
    while (dp_post(D, DP_EV_FATAL, UINT32_MAX, 0, NULL, NULL, 0)) {
    }
    CHECK(D->ev_count == DP_EV_MAX_COUNT, "ev_count %u after filling", D->ev_count);
  }
  /* The first packet under a new `next` keypair while the queue is full: delivered, its
   * CONFIRM lost (counted as eventQueueFull), so the next packet must post it after all. */
  P[0].k[DP_NEXT] = new_key(now_ms);
  install(&P[0]);
  {
    uint8_t inner[200];
    size_t n = make_inner(inner, 0, true, true, 120);
    pkt p;
    if (D->flows) meshd_flowcache_admit(D->flows, inner, n, now_ms, 0);
    seal(&p, 0, DP_NEXT, P[0].k[DP_NEXT].next_counter++, inner, n);
    uint64_t full = atomic_load(&D->drops[DP_DROP_eventQueueFull]);
    rx_out o = rx(p.b, p.len, NULL);
    CHECK(o.action == DP_RX_DELIVER, "next keypair with the queue full: action %d", o.action);
    CHECK(atomic_load(&D->drops[DP_DROP_eventQueueFull]) == full + 1, "lost CONFIRM not counted");
  }
  /* A packet from a new endpoint while the queue is full: delivered, but the roam is undone
   * (JS could not be told, and it sends handshakes to the endpoint it knows), so that the next
   * packet from there roams and reports it. */
  dp_endpoint moved_to = endpoint(3), before_ep, after_ep;
  {
    uint8_t inner[200];
    size_t n = make_inner(inner, 1, false, true, 80);
    pkt p;
    dp_peer *peer = dp_peer_get(D, P[1].id);
    dp_peer_endpoint(peer, &before_ep);
    CHECK(!ep_equal(&before_ep, &moved_to), "test endpoint already in use");
    if (D->flows) meshd_flowcache_admit(D->flows, inner, n, now_ms, 0);
    seal(&p, 1, DP_CURRENT, P[1].k[DP_CURRENT].next_counter++, inner, n);
    uint64_t full = atomic_load(&D->drops[DP_DROP_eventQueueFull]);
    rx_out o = rx(p.b, p.len, &moved_to);
    CHECK(o.action == DP_RX_DELIVER, "roaming with the queue full: action %d", o.action);
    CHECK(atomic_load(&D->drops[DP_DROP_eventQueueFull]) == full + 1, "lost ROAM not counted");
    dp_peer_endpoint(peer, &after_ep);
    CHECK(after_ep.len == before_ep.len && memcmp(&after_ep.addr, &before_ep.addr, before_ep.len) == 0,
          "a roam JS was not told of stayed in place");
  }
  drain();
  CHECK(D->ev_count == 0 && D->ev_bytes == 0, "drained");
  {
    uint8_t inner[200];
    size_t n = make_inner(inner, 1, false, true, 80);
    pkt p;
    if (D->flows) meshd_flowcache_admit(D->flows, inner, n, now_ms, 0);
    seal(&p, 1, DP_CURRENT, P[1].k[DP_CURRENT].next_counter++, inner, n);
    CHECK(rx(p.b, p.len, &moved_to).action == DP_RX_DELIVER, "roaming after draining");
    take();
    const dp_event *e;
    CHECK(count_kind(DP_EV_ROAM, &e) == 1 && ep_equal(&e->from, &moved_to), "the roam is reported on the next packet");
    dp_peer_endpoint(dp_peer_get(D, P[1].id), &after_ep);
    CHECK(ep_equal(&after_ep, &moved_to), "endpoint roamed on the next packet");
  }
  drain();
  CHECK(!P[0].k[DP_NEXT].confirmed, "a CONFIRM was queued into a full queue");
  valid_packet(0, DP_NEXT, 0, true); /* expects the CONFIRM now */
  CHECK(rx(m, sizeof m, NULL).action == DP_RX_DONE, "handshake after draining");
  drain();
}

static void expiry(void) {
  /* Peer 2: created exactly REJECT_AFTER_TIME ago is expired; 1 ms later is not. */
  tpeer *t = &P[2];
  uint8_t inner[200];
  size_t n = make_inner(inner, 2, false, true, 60);
  pkt p;
  if (D->flows) meshd_flowcache_admit(D->flows, inner, n, now_ms, 0);
  t->k[DP_CURRENT] = new_key(now_ms - DP_REJECT_AFTER_TIME_MS);
  t->k[DP_PREVIOUS] = new_key(now_ms - DP_REJECT_AFTER_TIME_MS + 1);
  t->k[DP_NEXT] = new_key(now_ms + 5); /* from the future: now - created wraps, expired */
  install(t);
  seal(&p, 2, DP_CURRENT, t->k[DP_CURRENT].next_counter++, inner, n);
  expect_drop(rx(p.b, p.len, NULL), DP_DROP_keypairExpired, "expired by time");
  seal(&p, 2, DP_NEXT, t->k[DP_NEXT].next_counter++, inner, n);
  expect_drop(rx(p.b, p.len, NULL), DP_DROP_keypairExpired, "created in the future");
  seal(&p, 2, DP_PREVIOUS, t->k[DP_PREVIOUS].next_counter++, inner, n);
  rx_out o = rx(p.b, p.len, NULL);
  CHECK(o.action == DP_RX_DELIVER && o.len == n, "1 ms before expiry: action %d", o.action);
  /* By counter: REJECT_AFTER_MESSAGES - 1 is the last one taken. */
  seal(&p, 2, DP_PREVIOUS, DP_REJECT_AFTER_MESSAGES, inner, n);
  expect_drop(rx(p.b, p.len, NULL), DP_DROP_keypairExpired, "counter REJECT_AFTER_MESSAGES");
  seal(&p, 2, DP_PREVIOUS, UINT64_MAX, inner, n);
  expect_drop(rx(p.b, p.len, NULL), DP_DROP_keypairExpired, "counter 2^64-1");
  seal(&p, 2, DP_PREVIOUS, DP_REJECT_AFTER_MESSAGES - 1, inner, n);
  o = rx(p.b, p.len, NULL);
  CHECK(o.action == DP_RX_DELIVER, "counter REJECT_AFTER_MESSAGES - 1: action %d", o.action);
  /* Fresh keys again. */
  for (int s = 0; s < 3; s++) t->k[s] = new_key(now_ms);
  install(t);
  drain();
}

/* dp_peer_set_keypairs: kept sessions keep their windows, dropped ones are unindexed. */
static void keypair_semantics(void) {
  tpeer *t = &P[0];
  uint8_t inner[200];
  size_t n = make_inner(inner, 0, true, true, 80);
  pkt p[12];
  if (D->flows) meshd_flowcache_admit(D->flows, inner, n, now_ms, 0);
  for (int s = 0; s < 3; s++) t->k[s] = new_key(now_ms), t->k[s].next_counter = 0;
  install(t);
  for (int c = 0; c < 12; c++) seal(&p[c], 0, DP_CURRENT, (uint64_t)c, inner, n);
  for (int c = 0; c < 10; c++) CHECK(rx(p[c].b, p[c].len, NULL).action == DP_RX_DELIVER, "session A counter %d", c);
  tkey a = t->k[DP_CURRENT], b = t->k[DP_PREVIOUS], c = t->k[DP_NEXT];
  pkt pb;
  seal(&pb, 0, DP_PREVIOUS, 0, inner, n);

  /* Re-set: A stays current, B goes, C stays next, a new previous D. */
  t->k[DP_PREVIOUS] = new_key(now_ms);
  install(t);
  CHECK(dp_index_lookup(D, b.local) == NULL, "dropped keypair still indexed");
  expect_drop(rx(pb.b, pb.len, NULL), DP_DROP_unknownIndex, "packet under a dropped keypair");
  CHECK(dp_index_lookup(D, a.local) != NULL && dp_index_lookup(D, c.local) != NULL &&
            dp_index_lookup(D, t->k[DP_PREVIOUS].local) != NULL,
        "kept keypairs indexed");
  expect_drop(rx(p[5].b, p[5].len, NULL), DP_DROP_replayedCounter, "replay after a re-set (kept window)");
  CHECK(rx(p[10].b, p[10].len, NULL).action == DP_RX_DELIVER, "next counter after a re-set");

  /* A moves to previous (a new current): still the same window. */
  t->k[DP_PREVIOUS] = a;
  t->k[DP_CURRENT] = new_key(now_ms);
  install(t);
  expect_drop(rx(p[3].b, p[3].len, NULL), DP_DROP_replayedCounter, "replay after moving slots");
  CHECK(rx(p[11].b, p[11].len, NULL).action == DP_RX_DELIVER, "counter 11 under previous");
  CHECK(dp_index_lookup(D, a.local)->peer == dp_peer_get(D, t->id), "keypair's peer");

  /* Dropped and re-added under the same index: a fresh window (counter 3 is new again). */
  t->k[DP_PREVIOUS].present = false;
  install(t);
  CHECK(dp_index_lookup(D, a.local) == NULL, "A unindexed");
  t->k[DP_PREVIOUS] = a;
  install(t);
  CHECK(rx(p[3].b, p[3].len, NULL).action == DP_RX_DELIVER, "re-added session has a fresh window");

  /* All absent: nothing indexed. */
  tkey saved[3];
  memcpy(saved, t->k, sizeof saved);
  for (int s = 0; s < 3; s++) t->k[s].present = false;
  install(t);
  for (int s = 0; s < 3; s++) CHECK(dp_index_lookup(D, saved[s].local) == NULL, "slot %d still indexed", s);
  CHECK(dp_peer_get(D, t->id)->kp[0] == NULL && dp_peer_get(D, t->id)->kp[1] == NULL && dp_peer_get(D, t->id)->kp[2] == NULL,
        "peer still has keypairs");

  /* Rotations as handshakes make them (next -> current -> previous -> gone), on every peer,
   * many times: every live index finds its keypair, every dropped one nothing, and the index
   * table stays bounded (tombstones are swept, not accumulated). */
  for (int s = 0; s < 3; s++) t->k[s] = new_key(now_ms);
  install(t);
  for (int r = 0; r < 4000; r++) {
    tpeer *q = &P[below(NPEERS)];
    uint32_t gone = q->k[DP_PREVIOUS].local;
    if (below(2)) { /* confirm: next becomes current, a fresh next */
      q->k[DP_PREVIOUS] = q->k[DP_CURRENT];
      q->k[DP_CURRENT] = q->k[DP_NEXT];
      q->k[DP_NEXT] = new_key(now_ms);
    } else { /* we initiated: a new current */
      q->k[DP_PREVIOUS] = q->k[DP_CURRENT];
      q->k[DP_CURRENT] = new_key(now_ms);
    }
    install(q);
    CHECK(dp_index_lookup(D, gone) == NULL, "rotation %d: dropped index found", r);
    for (int i = 0; i < NPEERS; i++)
      for (int s = 0; s < 3; s++) {
        dp_keypair *kp = P[i].k[s].present ? dp_index_lookup(D, P[i].k[s].local) : NULL;
        if (P[i].k[s].present)
          CHECK(kp != NULL && kp == dp_peer_get(D, P[i].id)->kp[s], "rotation %d: peer %d slot %d", r, i, s);
      }
    if (failures) return;
  }
  CHECK(D->index_cap <= 256, "index table grew to %u slots for %d keypairs", D->index_cap, 3 * NPEERS);
  /* Traffic still flows on all of them. */
  for (int i = 0; i < NPEERS; i++)
    for (int s = 0; s < 3; s++) valid_packet(i, s, 0, true);

  /* A peer removed and re-added: its indices are gone. */
  tkey old[3];
  memcpy(old, P[1].k, sizeof old);
  pthread_rwlock_wrlock(&D->lock);
  dp_peer_remove(D, P[1].id);
  pthread_rwlock_unlock(&D->lock);
  CHECK(dp_peer_get(D, P[1].id) == NULL, "removed peer");
  for (int s = 0; s < 3; s++) CHECK(dp_index_lookup(D, old[s].local) == NULL, "removed peer's slot %d indexed", s);
  CHECK(dp_peer_upsert(D, P[1].id) == 0, "re-add");
  for (int s = 0; s < 3; s++) P[1].k[s] = new_key(now_ms);
  install(&P[1]);
  drain();
}

/* ------------------------------------------------------------------ (b) hostile input */

typedef struct authentic {
  pkt p;
  int peer;
  uint8_t inner[1500];
  size_t n;
  bool used;
} authentic;

static void make_authentic(authentic *a) {
  a->peer = (int)below(NPEERS);
  int s = live_slot(a->peer);
  a->n = make_inner(a->inner, a->peer, below(2), true, below(1400));
  if (D->flows) meshd_flowcache_admit(D->flows, a->inner, a->n, now_ms, 0);
  seal(&a->p, a->peer, s, P[a->peer].k[s].next_counter++, a->inner, a->n);
  a->used = false;
}

static uint32_t live_index(void) {
  int i = (int)below(NPEERS);
  return P[i].k[live_slot(i)].local;
}

/* What the header alone decides for a non-authentic input; -1: a data message that must fail
 * somewhere in the keypair/decrypt path. */
static int header_action(const uint8_t *b, size_t len) {
  static const size_t want[4] = {0, 148, 92, 64};
  if (len < 4 || (b[1] | b[2] | b[3])) return DP_RX_DROP;
  if (b[0] >= 1 && b[0] <= 3) return len == want[b[0]] && D->ev_count < DP_EV_MAX_COUNT ? DP_RX_DONE : DP_RX_DROP;
  return DP_RX_DROP;
}

static uint64_t hostile_inputs, hostile_delivers, mutation_kinds[10];

static void check_hostile(const uint8_t *b, size_t len, authentic *cand[2]) {
  int want = header_action(b, len);
  authentic *match = NULL;
  for (int c = 0; c < 2; c++)
    if (cand[c] && !cand[c]->used && cand[c]->p.len == len && memcmp(cand[c]->p.b, b, len) == 0) match = cand[c];
  rx_out o = rx(b, len, NULL);
  hostile_inputs++;
  if (match) {
    match->used = true;
    hostile_delivers++;
    CHECK(o.action == DP_RX_DELIVER && o.len == match->n && memcmp(o.data, match->inner, match->n) == 0,
          "authentic (unmodified) datagram: action %d", o.action);
  } else {
    CHECK(o.action == want, "hostile input (len %zu, type %u): action %d, want %d (reason %s)", len, b[0], o.action, want,
          o.reason >= 0 ? drop_names[o.reason] : "-");
  }
}

static void hostile(uint64_t iters) {
  static uint8_t b[2 * sizeof(((pkt *)0)->b) + 200]; /* room for two datagrams spliced */
  authentic A, B;
  for (uint64_t it = 0; it < iters && failures == 0; it++) {
    if (below(3000) == 0) drain(); /* sometimes the queue fills: handshakes then drop */
    now_ms += below(2);
    uint64_t k = below(100);
    if (k < 35) { /* random bytes, steered towards the interesting headers sometimes */
      size_t len = (size_t)below(2001);
      rnd_bytes(b, len);
      uint64_t h = below(10);
      if (len >= 16 && h < 5) {
        b[0] = 4;
        b[1] = b[2] = b[3] = 0;
        uint32_t idx = live_index();
        memcpy(b + 4, &idx, 4);
        if (h < 2) memset(b + 12, 0, 4); /* a counter in range */
      } else if (len >= 4 && h < 8) {
        b[0] = (uint8_t)(1 + below(3));
        b[1] = b[2] = b[3] = 0;
        if (h == 7) len = b[0] == 1 ? 148 : b[0] == 2 ? 92 : 64;
      }
      authentic *none[2] = {NULL, NULL};
      check_hostile(b, len, none);
      continue;
    }
    /* A mutation of an authentic datagram. */
    make_authentic(&A);
    make_authentic(&B);
    size_t len = A.p.len;
    memcpy(b, A.p.b, len);
    uint64_t m = below(10);
    mutation_kinds[m]++;
    switch (m) {
    case 0: /* a single bit anywhere */
    {
      size_t bit = below(len * 8);
      b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
      break;
    }
    case 1: /* a few bytes */
      for (int x = (int)(1 + below(8)); x > 0; x--) b[below(len)] ^= (uint8_t)(1 + below(255));
      break;
    case 2: /* truncated */
      len = below(len);
      break;
    case 3: /* extended */
    {
      size_t more = 1 + below(150);
      rnd_bytes(b + len, more);
      if (below(2)) memset(b + len, 0, more);
      len += more;
      break;
    }
    case 4: /* type or reserved bytes */
      b[below(4)] = (uint8_t)rnd();
      break;
    case 5: /* receiver index: another live one, a random one, one byte off */
    {
      uint32_t idx = below(3) == 0 ? (uint32_t)rnd() : live_index();
      if (below(3) == 0) idx = A.p.b[4] | (uint32_t)A.p.b[5] << 8 | (uint32_t)A.p.b[6] << 16 | (uint32_t)A.p.b[7] << 24,
                         idx ^= 1u << below(32);
      memcpy(b + 4, &idx, 4);
      break;
    }
    case 6: /* counter: near, far, past the limit */
    {
      uint64_t c;
      memcpy(&c, b + 8, 8);
      uint64_t r = below(4);
      c = r == 0 ? c + 1 + below(10) : r == 1 ? c - 1 - below(10) : r == 2 ? rnd() : DP_REJECT_AFTER_MESSAGES + below(100);
      memcpy(b + 8, &c, 8);
      break;
    }
    case 7: /* B's header on A's body */
      memcpy(b, B.p.b, DP_HEADER_LEN);
      break;
    case 8: /* A's start, B's end, cut anywhere */
    {
      size_t cut = below(len + 1), tail = below(B.p.len + 1);
      memcpy(b + cut, B.p.b + tail, B.p.len - tail);
      len = cut + (B.p.len - tail);
      break;
    }
    default: /* A then B in one datagram, or B's tag on A */
      if (below(2) && len + B.p.len <= sizeof b) {
        memcpy(b + len, B.p.b, B.p.len);
        len += B.p.len;
      } else if (len >= 32 && B.p.len >= 32) {
        memcpy(b + len - DP_TAG_LEN, B.p.b + B.p.len - DP_TAG_LEN, DP_TAG_LEN);
      }
      break;
    }
    authentic *cand[2] = {&A, &B};
    check_hostile(b, len, cand);
    /* The forgery moved nothing: A and B (if unused) still open, once. */
    if (!A.used) check_hostile(A.p.b, A.p.len, cand);
    CHECK(A.used, "authentic A after a mutation was not delivered");
    if (!B.used && below(2)) {
      check_hostile(B.p.b, B.p.len, cand);
      CHECK(B.used, "authentic B after a mutation was not delivered");
    }
    if (below(4) == 0) { /* and a replay of A is still a replay */
      uint64_t replays = atomic_load(&D->drops[DP_DROP_replayedCounter]);
      CHECK(rx(A.p.b, A.p.len, NULL).action == DP_RX_DROP, "replay of A");
      CHECK(atomic_load(&D->drops[DP_DROP_replayedCounter]) == replays + 1, "replay of A counted");
    }
  }
  /* Forged counters far ahead must not move the window: an authentic packet far behind them. */
  for (int i = 0; i < NPEERS; i++) {
    uint8_t f[200];
    int s = live_slot(i);
    for (int x = 0; x < 50; x++) {
      rnd_bytes(f, sizeof f);
      f[0] = 4;
      f[1] = f[2] = f[3] = 0;
      memcpy(f + 4, &P[i].k[s].local, 4);
      uint64_t c = P[i].k[s].next_counter + 100000 + below(1u << 30);
      memcpy(f + 8, &c, 8);
      expect_drop(rx(f, sizeof f, NULL), DP_DROP_decryptFailed, "forged counter");
    }
    valid_packet(i, s, 0, true);
  }
}

/* ------------------------------------------------------------------ main */

static void run(bool flows, uint64_t iters) {
  setup(flows);
  /* (a) valid traffic */
  handshake_messages();
  for (int r = 0; r < 3000 && failures == 0; r++) {
    int i = (int)below(NPEERS), s = live_slot(i);
    uint64_t k = below(100);
    int kind = k < 70 ? 0 : k < 80 ? 1 : k < 90 ? 2 : 3;
    valid_packet(i, s, kind, !flows || below(4) != 0);
    now_ms += below(3);
  }
  /* Without allowed IPs nothing routes back. */
  pthread_rwlock_wrlock(&D->lock);
  dp_set_allowedips(D, NULL);
  pthread_rwlock_unlock(&D->lock);
  valid_packet(0, DP_CURRENT, 1, true);
  {
    uint8_t inner[200];
    size_t n = make_inner(inner, 0, false, true, 100);
    pkt p;
    seal(&p, 0, DP_CURRENT, P[0].k[DP_CURRENT].next_counter++, inner, n);
    expect_drop(rx(p.b, p.len, NULL), DP_DROP_allowedIpsMismatch, "no allowed IPs");
  }
  install_allowedips();
  queue_bound();
  expiry();
  keypair_semantics();
  /* (b) hostile input */
  hostile(iters);
  /* Leave events queued: dp_destroy frees them. */
  dp_free_events(events);
  events = NULL;
  dp_destroy(D);
  D = NULL;
}

int main(int argc, char **argv) {
  uint64_t iters = 20000, seed = 0x72782d66757a7a21ull;
  const char *s = argc > 1 ? argv[1] : getenv("DP_FUZZ_ITERS");
  if (s && *s && strtoull(s, NULL, 0) > 0) iters = strtoull(s, NULL, 0);
  if ((s = getenv("DP_TEST_SEED")) && *s) seed = strtoull(s, NULL, 0);
  rng_state = seed;
  CTX = EVP_CIPHER_CTX_new();
  CHECK(CTX != NULL, "EVP_CIPHER_CTX_new");
  printf("dp_rx_fuzz_test: seed %llu, %llu hostile iterations (half without a flow cache, half with)\n",
         (unsigned long long)seed, (unsigned long long)iters);
  run(false, iters / 2);
  if (failures == 0) run(true, iters - iters / 2);
  EVP_CIPHER_CTX_free(CTX);
  printf("  %llu datagrams received (drop %llu, done %llu, deliver %llu); %llu hostile inputs, %llu of them authentic\n",
         (unsigned long long)rx_calls, (unsigned long long)rx_actions[0], (unsigned long long)rx_actions[1],
         (unsigned long long)rx_actions[2], (unsigned long long)hostile_inputs, (unsigned long long)hostile_delivers);
  if (failures) {
    fprintf(stderr, "dp_rx_fuzz_test: %d failures\n", failures);
    return 1;
  }
  printf("dp_rx_fuzz_test: ok\n");
  return 0;
}
