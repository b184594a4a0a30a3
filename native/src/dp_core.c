/*
 * The per-packet logic of the native datapath, without I/O: transport seal/open (§5.4.6),
 * the replay window (§5.4.6, RFC 6479 as the kernel's counter_validate), and the receive
 * decision for one datagram. The caller holds the datapath's read lock and passes the time.
 */
#include "datapath.h"
#include "flowcache.h"

#include <string.h>
#include <time.h>

uint64_t dp_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint32_t get_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get_le64(const uint8_t *p) { return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32; }

static inline void put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

void dp_replay_reset(dp_replay *r) { memset(r, 0, sizeof *r); }

bool dp_replay_validate(dp_replay *r, uint64_t counter) {
  const uint64_t words = DP_COUNTER_BITS_TOTAL / 64;
  if (r->counter >= DP_REJECT_AFTER_MESSAGES + 1 || counter >= DP_REJECT_AFTER_MESSAGES) return false;
  counter++; /* stored plus one, so that counter 0 differs from the empty window */
  if (DP_COUNTER_WINDOW + counter < r->counter) return false;
  uint64_t index = counter >> 6;
  if (counter > r->counter) {
    uint64_t current = r->counter >> 6;
    uint64_t top = index - current < words ? index - current : words;
    for (uint64_t i = 1; i <= top; i++) r->backtrack[(current + i) & (words - 1)] = 0;
    r->counter = counter;
  }
  uint64_t *word = &r->backtrack[index & (words - 1)];
  uint64_t bit = 1ull << (counter & 63);
  if (*word & bit) return false;
  *word |= bit;
  return true;
}

/* Kernel calculate_skb_padding: to a multiple of 16, but never past the MTU. */
size_t dp_padding(size_t len, uint32_t mtu) {
  size_t last = len, padded;
  if (mtu == 0) return (16 - (len & 15)) & 15;
  if (len > mtu) last = len % mtu;
  padded = (last + 15) & ~(size_t)15;
  if (padded > mtu) padded = mtu;
  return padded - last;
}

/*
 * The cipher to name in an Init call: only on a context's first use. Naming it again makes
 * OpenSSL 3 look it up and reset the whole context on every packet (a lock, string compares,
 * a cleanse: ~5 % of the TX thread in a profile); with NULL it only takes the key and nonce.
 */
static inline const EVP_CIPHER *cipher_for(EVP_CIPHER_CTX *ctx) {
  return EVP_CIPHER_CTX_get0_cipher(ctx) == NULL ? EVP_chacha20_poly1305() : NULL;
}

static void make_nonce(uint8_t nonce[12], uint64_t counter) {
  memset(nonce, 0, 4);
  for (int i = 0; i < 8; i++) nonce[4 + i] = (uint8_t)(counter >> (8 * i));
}

size_t dp_seal(EVP_CIPHER_CTX *ctx, const dp_keypair *kp, uint64_t counter, uint8_t *msg, size_t len, uint32_t mtu) {
  size_t pad = dp_padding(len, mtu), total = len + pad;
  uint8_t *body = msg + DP_HEADER_LEN, nonce[12];
  int n = 0;
  memset(body + len, 0, pad);
  msg[0] = DP_MSG_DATA;
  msg[1] = msg[2] = msg[3] = 0;
  put_le32(msg + 4, kp->remote_index);
  put_le32(msg + 8, (uint32_t)counter);
  put_le32(msg + 12, (uint32_t)(counter >> 32));
  make_nonce(nonce, counter);
  if (EVP_EncryptInit_ex(ctx, cipher_for(ctx), NULL, kp->send_key, nonce) != 1) return 0;
  if (total && (EVP_EncryptUpdate(ctx, body, &n, body, (int)total) != 1 || (size_t)n != total)) return 0;
  if (EVP_EncryptFinal_ex(ctx, body + total, &n) != 1) return 0;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, DP_TAG_LEN, body + total) != 1) return 0;
  return DP_HEADER_LEN + total + DP_TAG_LEN;
}

long dp_open(EVP_CIPHER_CTX *ctx, const dp_keypair *kp, uint64_t counter, uint8_t *msg, size_t len) {
  if (len < DP_HEADER_LEN + DP_TAG_LEN) return -1;
  size_t pt = len - DP_HEADER_LEN - DP_TAG_LEN;
  uint8_t *body = msg + DP_HEADER_LEN, nonce[12];
  int n = 0, m = 0;
  make_nonce(nonce, counter);
  if (EVP_DecryptInit_ex(ctx, cipher_for(ctx), NULL, kp->recv_key, nonce) != 1) return -1;
  if (pt && EVP_DecryptUpdate(ctx, body, &n, body, (int)pt) != 1) return -1;
  /* The tag is checked in Final, in constant time inside OpenSSL. */
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, DP_TAG_LEN, body + pt) != 1) return -1;
  if (EVP_DecryptFinal_ex(ctx, body + n, &m) != 1) return -1;
  return (long)pt;
}

size_t dp_inner_length(const uint8_t *p, size_t len) {
  if (len < 1) return 0;
  if (p[0] >> 4 == 4) {
    if (len < 20) return 0;
    size_t ihl = (size_t)(p[0] & 15) * 4, total = (size_t)p[2] << 8 | p[3];
    return ihl >= 20 && total >= ihl && total <= len ? total : 0;
  }
  if (p[0] >> 4 == 6) {
    if (len < 40) return 0;
    size_t total = 40 + ((size_t)p[4] << 8 | p[5]);
    return total <= len ? total : 0;
  }
  return 0;
}

dp_keypair *dp_index_lookup(const dp *d, uint32_t local_index) {
  if (d->index_cap == 0) return NULL;
  uint32_t mask = d->index_cap - 1;
  for (uint32_t i = dp_index_hash(local_index) & mask, n = 0; n < d->index_cap; i = (i + 1) & mask, n++) {
    dp_keypair *kp = d->index[i];
    if (kp == NULL) return NULL;
    if (kp != DP_TOMBSTONE && kp->local_index == local_index) return kp;
  }
  return NULL;
}

dp_keypair *dp_sending_keypair(dp_peer *peer, uint64_t now) {
  dp_keypair *kp = peer->kp[DP_CURRENT];
  if (kp == NULL || !kp->sending_valid || now - kp->created >= DP_REJECT_AFTER_TIME_MS) return NULL;
  if (atomic_load_explicit(&kp->send_counter, memory_order_relaxed) >= DP_REJECT_AFTER_MESSAGES) return NULL;
  return kp;
}

static bool same_endpoint(const dp_endpoint *a, const dp_endpoint *b) {
  if (a->len != b->len || a->len == 0) return false;
  if (a->addr.sa.sa_family == AF_INET)
    return a->addr.v4.sin_port == b->addr.v4.sin_port && a->addr.v4.sin_addr.s_addr == b->addr.v4.sin_addr.s_addr;
  return a->addr.v6.sin6_port == b->addr.v6.sin6_port &&
         memcmp(&a->addr.v6.sin6_addr, &b->addr.v6.sin6_addr, sizeof(struct in6_addr)) == 0 &&
         a->addr.v6.sin6_scope_id == b->addr.v6.sin6_scope_id;
}

static inline void set_time(_Atomic uint64_t *t, uint64_t now) { atomic_store_explicit(t, now, memory_order_relaxed); }

/* kernel receive.c wg_packet_rx_poll + wg_packet_consume_data_done, minus the queueing. */
void dp_rx_datagram(dp *d, EVP_CIPHER_CTX *ctx, meshd_flowcache_hint *hint, uint8_t *buf, size_t len, const dp_endpoint *from, uint64_t now,
                    dp_rx_result *out) {
  out->action = DP_RX_DROP;
  out->peer = NULL;
  if (len < 4) {
    dp_drop(d, DP_DROP_truncated);
    return;
  }
  uint8_t type = buf[0];
  if (buf[1] | buf[2] | buf[3]) {
    dp_drop(d, type >= 1 && type <= 4 ? DP_DROP_reservedNonZero : DP_DROP_badType);
    return;
  }
  if (type != DP_MSG_DATA) {
    static const size_t want[4] = {0, 148, 92, 64};
    if (type < 1 || type > 3) {
      dp_drop(d, DP_DROP_badType);
    } else if (len != want[type]) {
      dp_drop(d, DP_DROP_badLength);
    } else if (dp_post(d, DP_EV_HANDSHAKE, UINT32_MAX, 0, from, buf, len)) {
      /* Handshakes are TypeScript's, with its cookie and rate-limit logic. */
      out->action = DP_RX_DONE;
    }
    return;
  }
  if (len < DP_HEADER_LEN + DP_TAG_LEN) {
    dp_drop(d, DP_DROP_badLength);
    return;
  }
  dp_keypair *kp = dp_index_lookup(d, get_le32(buf + 4));
  if (kp == NULL) {
    dp_drop(d, DP_DROP_unknownIndex);
    return;
  }
  uint64_t counter = get_le64(buf + 8);
  if (now - kp->created >= DP_REJECT_AFTER_TIME_MS || counter >= DP_REJECT_AFTER_MESSAGES) {
    dp_drop(d, DP_DROP_keypairExpired);
    return;
  }
  long pt = dp_open(ctx, kp, counter, buf, len);
  if (pt < 0) {
    dp_drop(d, DP_DROP_decryptFailed);
    return;
  }
  /* Only after authentication: a forged counter must not move the window. */
  if (!dp_replay_validate(&kp->replay, counter)) {
    dp_drop(d, DP_DROP_replayedCounter);
    return;
  }
  dp_peer *peer = kp->peer;
  out->peer = peer;
  atomic_fetch_add_explicit(&peer->rx_bytes, len, memory_order_relaxed);
  atomic_fetch_add_explicit(&peer->rx_packets, 1, memory_order_relaxed);
  set_time(&peer->t_auth_recv, now);
  /* §6.5 roaming: the endpoint follows the latest authenticated packet. */
  if (from != NULL && from->len) {
    bool moved;
    dp_endpoint was;
    pthread_mutex_lock(&peer->ep_lock);
    moved = !same_endpoint(&peer->ep, from);
    if (moved) {
      was = peer->ep;
      peer->ep = *from;
    }
    pthread_mutex_unlock(&peer->ep_lock);
    /* JS must learn of it (its handshakes go to peer.endpoint): with the queue full, roam at
     * the next packet instead, when the post is tried again. */
    if (moved && !dp_post(d, DP_EV_ROAM, peer->id, 0, from, NULL, 0)) {
      pthread_mutex_lock(&peer->ep_lock);
      if (same_endpoint(&peer->ep, from)) peer->ep = was;
      pthread_mutex_unlock(&peer->ep_lock);
    }
  }
  /* Key confirmation (§5.4.4): JS promotes the keypair; tell it once. If the queue is full,
   * the next packet under it tries again (JS only learns of the confirmation this way). */
  if (kp == peer->kp[DP_NEXT] && !atomic_exchange(&kp->confirm_posted, true)) {
    if (!dp_post(d, DP_EV_CONFIRM, peer->id, kp->local_index, NULL, NULL, 0)) atomic_store(&kp->confirm_posted, false);
  }
  if (pt == 0) {
    out->action = DP_RX_DONE; /* keepalive */
    return;
  }
  set_time(&peer->t_data_recv, now);
  uint8_t *inner = buf + DP_HEADER_LEN;
  size_t inner_len = dp_inner_length(inner, (size_t)pt);
  if (inner_len == 0) {
    dp_drop(d, DP_DROP_invalidInnerPacket);
    return;
  }
  /* Cryptokey routing, receive side: the source must route back to this peer. */
  bool v6 = inner[0] >> 4 == 6;
  if (dp_allowedips_lookup(d->aips, v6 ? 6 : 4, inner + (v6 ? 8 : 12)) != peer->id) {
    dp_drop(d, DP_DROP_allowedIpsMismatch);
    return;
  }
  /* Zero trust: established flows pass here; anything else is the JS filter's to decide. */
  if (d->flows != NULL) {
    int v = meshd_flowcache_inbound(d->flows, hint, inner, inner_len, now);
    if (v < 0) {
      dp_drop(d, DP_DROP_invalidInnerPacket);
      return;
    }
    if (v == 0) {
      if (dp_post(d, DP_EV_VERDICT, peer->id, 0, NULL, inner, inner_len)) out->action = DP_RX_DONE;
      return;
    }
    if (v < 5) atomic_fetch_add_explicit(&d->flow_accepted[v], 1, memory_order_relaxed);
  }
  out->action = DP_RX_DELIVER;
  out->data = inner;
  out->len = inner_len;
}
