/*
 * The native datapath: the transport-data half of WireGuard (paper §5.4.6, §6) in C threads.
 *
 *   dp_core.c        pure per-packet logic: seal, open, replay window, routing, the receive
 *                    decision for one datagram. No I/O, no clock (time is passed in).
 *   dp_allowedips.c  cryptokey routing table (longest prefix match), rebuilt whole from JS.
 *   dp_tables.c      peers, keypairs, the index table; what JS hands over (sessions, endpoints).
 *   dp_events.c      the bounded queue of events for JS (handshake messages, packets that need
 *                    a session or a filter verdict, confirmations, roaming).
 *   dp_io.c          the threads: TUN read -> encrypt -> UDP send (GSO), UDP receive (GRO) ->
 *                    decrypt -> TUN write (coalesced), and the sockets.
 *   dp_napi.c        the Node-API surface (src/io/datapath.ts is its only user);
 *   dp_napi_stats.c  its counters, per peer and per device.
 *
 * Handshakes, cookies, timers and policy stay in TypeScript: JS installs sessions (keys,
 * indices, counters), peers' allowed IPs and endpoints here and reads counters and event
 * timestamps back on its timer tick.
 *
 * Locking: one rwlock. The RX and TX threads hold it for reading over a batch; JS takes it for
 * writing to change any table, so a keypair JS drops is never in use when it is wiped. The
 * replay windows are written only by the RX thread; send counters are atomic (the TX thread
 * and JS both send); endpoints have a per-peer mutex (the RX thread roams them).
 */
#ifndef MESHD_DATAPATH_H
#define MESHD_DATAPATH_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/evp.h>

/* §6.1 limits. */
#define DP_REJECT_AFTER_TIME_MS 180000u
#define DP_REKEY_AFTER_TIME_MS 120000u
#define DP_REKEY_AFTER_MESSAGES (1ull << 60)
/* The paper's 2^64 - 2^13 - 1 (constants.ts REJECT_AFTER_MESSAGES). */
#define DP_REJECT_AFTER_MESSAGES (UINT64_MAX - 8192ull)

/* §5.4 wire sizes. */
#define DP_MSG_INITIATION 1
#define DP_MSG_RESPONSE 2
#define DP_MSG_COOKIE 3
#define DP_MSG_DATA 4
#define DP_HEADER_LEN 16
#define DP_TAG_LEN 16
#define DP_KEY_LEN 32

/* Replay window (kernel counter_validate, RFC 6479): 8192 bits of 64-bit words. */
#define DP_COUNTER_BITS_TOTAL 8192u
#define DP_COUNTER_WINDOW (DP_COUNTER_BITS_TOTAL - 64u)

typedef struct dp_replay {
  uint64_t counter; /* one more than the greatest counter accepted */
  uint64_t backtrack[DP_COUNTER_BITS_TOTAL / 64];
} dp_replay;

typedef struct dp_peer dp_peer;

typedef struct dp_keypair {
  uint8_t send_key[DP_KEY_LEN];
  uint8_t recv_key[DP_KEY_LEN];
  uint32_t local_index;  /* as JS numbers it: the little-endian u32 on the wire */
  uint32_t remote_index;
  uint64_t created;      /* native monotonic ms */
  _Atomic uint64_t send_counter;
  bool is_initiator;
  bool sending_valid;
  atomic_bool confirm_posted; /* a `next` keypair's first packet was reported to JS */
  dp_replay replay;           /* RX thread only */
  dp_peer *peer;
} dp_keypair;

typedef struct dp_endpoint {
  union {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
  } addr;
  socklen_t len; /* 0: no endpoint */
} dp_endpoint;

enum { DP_CURRENT = 0, DP_PREVIOUS = 1, DP_NEXT = 2 };

struct dp_peer {
  uint32_t id;
  dp_keypair *kp[3];
  pthread_mutex_t ep_lock;
  dp_endpoint ep;
  _Atomic uint64_t rx_bytes, tx_bytes, rx_packets, tx_packets;
  /* Last time (native ms, 0 = never) of each timer event (timers.ts): JS replays them in order. */
  _Atomic uint64_t t_data_sent, t_auth_sent, t_data_recv, t_auth_recv;
};

/* Drop reasons counted natively; names match src/wire/drops.ts where one exists. */
#define DP_DROPS(X)                                                                          \
  X(truncated) X(badType) X(badLength) X(reservedNonZero) X(unknownIndex) X(keypairExpired) \
  X(decryptFailed) X(replayedCounter) X(invalidInnerPacket) X(allowedIpsMismatch)           \
  X(noRoute) X(noEndpoint) X(eventQueueFull) X(tunWriteFailed) X(udpSendFailed)             \
  X(tunReadError) X(offloadError) X(counterExhausted)
#define DP_DROP_ENUM(name) DP_DROP_##name,
enum { DP_DROPS(DP_DROP_ENUM) DP_DROP_COUNT };

/* Cryptokey routing: longest-prefix match over both families (dp_allowedips.c). */
typedef struct dp_allowedips dp_allowedips;
typedef struct dp_aip_entry {
  uint32_t peer_id;
  uint8_t family; /* 4 or 6 */
  uint8_t cidr;
  uint8_t addr[16];
} dp_aip_entry;
dp_allowedips *dp_allowedips_build(const dp_aip_entry *entries, size_t n);
void dp_allowedips_free(dp_allowedips *t);
/* UINT32_MAX when nothing matches. addr is 4 or 16 bytes by family. */
uint32_t dp_allowedips_lookup(const dp_allowedips *t, int family, const uint8_t *addr);

/* Events for JS (dp_events.c). */
enum {
  DP_EV_HANDSHAKE = 1, /* a handshake or cookie message: data, from */
  DP_EV_STAGE = 2,     /* an outbound packet for a peer without a usable session: peer, data */
  DP_EV_VERDICT = 3,   /* an inbound packet the flow cache does not know: peer, data */
  DP_EV_CONFIRM = 4,   /* first packet under a `next` keypair: peer, arg = its local index */
  DP_EV_FLOW = 5,      /* a new outbound flow (headers only): data */
  DP_EV_ROAM = 6,      /* an authenticated data packet came from a new endpoint: peer, from */
  DP_EV_FATAL = 7,     /* a thread stopped on an I/O error: arg = errno, data = what */
};

typedef struct dp_event {
  struct dp_event *next;
  uint8_t kind;
  uint32_t peer_id;
  uint32_t arg;
  dp_endpoint from;
  uint32_t len;
  uint8_t data[];
} dp_event;

typedef struct dp dp;

#define DP_MAX_QUEUES 8

/* The device. Fields below `lock` are guarded by it unless marked atomic. */
struct dp {
  pthread_rwlock_t lock;
  dp_peer **peers; /* by id; NULL = free */
  uint32_t peers_cap;
  dp_keypair **index; /* open addressing by local_index; NULL = empty, DP_TOMBSTONE = deleted */
  uint32_t index_cap, index_used;
  dp_allowedips *aips;
  struct meshd_flowcache *flows; /* NULL: no filter (a plain WireGuard interface) */
  uint64_t flows_gen;            /* bumped when `flows` is replaced: threads reset their hints */
  uint32_t mtu;

  /* I/O (dp_io.c) */
  int tun_fd; /* queue 0: the RX thread and JS write here */
  /* A multi-queue TUN (IFF_MULTI_QUEUE) spreads flows over its queues: one TX thread each. */
  int tun_queues[DP_MAX_QUEUES];
  uint32_t nqueues;
  pthread_t tx_threads[DP_MAX_QUEUES];
  bool vnet_hdr;
  int udp4, udp6;
  uint16_t port;
  int stop_fd; /* eventfd: wakes the threads to stop */
  bool gso, gro;
  bool running;
  pthread_t rx_thread;

  /* Events (dp_events.c) */
  pthread_mutex_t ev_lock;
  dp_event *ev_head, *ev_tail;
  uint32_t ev_count;
  uint32_t ev_kind_count[8]; /* by DP_EV_* */
  size_t ev_bytes;
  void (*ev_wake)(dp *d); /* tells JS there is something to drain */
  void *ev_wake_ctx;

  _Atomic uint64_t drops[DP_DROP_COUNT];
  /* Inbound packets the flow cache accepted in C, by flowcache.h MESHD_FC_IN_* (1..4). */
  _Atomic uint64_t flow_accepted[5];
  _Atomic uint64_t tx_syscalls, rx_syscalls, tun_writes, tun_reads, gso_sends, gro_segments, coalesced;
};

#define DP_TOMBSTONE ((dp_keypair *)(uintptr_t)1)
#define DP_EV_MAX_COUNT 4096u
/* Each kind a remote party can flood (handshakes, staging, verdicts, new flows) holds at most
 * this many, so one flood cannot crowd out the others; what is left (256) is for the rare
 * control events (confirmations, roaming, fatal errors). */
#define DP_EV_KIND_MAX 960u
#define DP_EV_MAX_BYTES (8u << 20)

/* The index table's hash (a local index is random, but remote parties choose which we look up). */
static inline uint32_t dp_index_hash(uint32_t i) {
  i ^= i >> 16;
  i *= 0x7feb352du;
  i ^= i >> 15;
  return i;
}

static inline void dp_drop(dp *d, int reason) { atomic_fetch_add_explicit(&d->drops[reason], 1, memory_order_relaxed); }

/* dp_core.c */
uint64_t dp_now_ms(void);
void dp_replay_reset(dp_replay *r);
bool dp_replay_validate(dp_replay *r, uint64_t counter);
size_t dp_padding(size_t len, uint32_t mtu);
/* Seals the plaintext at msg + 16 (len bytes; room for padding and tag after it) in place and
 * writes the header. Returns the message length, 0 on a cipher failure. */
size_t dp_seal(EVP_CIPHER_CTX *ctx, const dp_keypair *kp, uint64_t counter, uint8_t *msg, size_t len, uint32_t mtu);
/* Opens a transport message in place; returns the plaintext length or -1. */
long dp_open(EVP_CIPHER_CTX *ctx, const dp_keypair *kp, uint64_t counter, uint8_t *msg, size_t len);
/* The length an IP packet's header states, or 0 when it is not a well-formed v4/v6 packet. */
size_t dp_inner_length(const uint8_t *p, size_t len);
dp_keypair *dp_index_lookup(const dp *d, uint32_t local_index);
/* The keypair to send on for `peer` now, or NULL (JS must handshake). */
dp_keypair *dp_sending_keypair(dp_peer *peer, uint64_t now);

typedef struct dp_rx_result {
  int action; /* DP_RX_DELIVER: inner packet at data/len; DP_RX_DONE: nothing more; DP_RX_DROP */
  dp_peer *peer;
  uint8_t *data;
  size_t len;
} dp_rx_result;
enum { DP_RX_DROP = 0, DP_RX_DONE = 1, DP_RX_DELIVER = 2 };

/* One UDP datagram (the caller holds the read lock). Decrypts in place; a DELIVER result
 * points into buf, which then has DP_HEADER_LEN bytes of headroom before the packet. */
struct meshd_flowcache_hint;
void dp_rx_datagram(dp *d, EVP_CIPHER_CTX *ctx, struct meshd_flowcache_hint *hint, uint8_t *buf, size_t len,
                    const dp_endpoint *from, uint64_t now, dp_rx_result *out);

/* dp_tables.c */
dp *dp_create(uint32_t mtu);
void dp_destroy(dp *d);
dp_peer *dp_peer_get(const dp *d, uint32_t id);
int dp_peer_upsert(dp *d, uint32_t id);
void dp_peer_remove(dp *d, uint32_t id);
int dp_peer_set_endpoint(dp_peer *p, const dp_endpoint *ep);
void dp_peer_endpoint(dp_peer *p, dp_endpoint *out);
typedef struct dp_keypair_spec {
  bool present;
  uint32_t local_index, remote_index;
  uint8_t send_key[DP_KEY_LEN], recv_key[DP_KEY_LEN];
  uint64_t created;
  uint64_t send_counter;
  bool is_initiator, sending_valid;
} dp_keypair_spec;
/* Makes the peer's current/previous/next what JS says; keypairs kept by local index keep
 * their counters and replay windows; the rest are wiped. Write lock held. */
int dp_peer_set_keypairs(dp *d, dp_peer *p, const dp_keypair_spec spec[3]);
void dp_set_allowedips(dp *d, dp_allowedips *t);
void dp_wipe(void *p, size_t n);

/* dp_io.c: the sockets and threads (JS thread only, except where noted) */
int dp_open_sockets(dp *d, uint16_t port);
void dp_close_sockets(dp *d);
int dp_set_mark(dp *d, uint32_t mark);
int dp_send_raw(dp *d, const uint8_t *data, size_t len, const dp_endpoint *ep);
int dp_tun_write_copy(dp *d, const uint8_t *pkt, size_t len);
/* Read lock held by the caller. */
int dp_send_plaintexts(dp *d, EVP_CIPHER_CTX *ctx, dp_peer *peer, uint8_t *const *pkts, const size_t *lens, int n);
int dp_start(dp *d);
void dp_stop(dp *d);

/* dp_events.c */
bool dp_post(dp *d, int kind, uint32_t peer_id, uint32_t arg, const dp_endpoint *from, const uint8_t *data, size_t len);
dp_event *dp_take_events(dp *d);
void dp_free_events(dp_event *e);

#endif /* MESHD_DATAPATH_H */
