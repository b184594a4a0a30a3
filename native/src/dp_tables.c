/*
 * What JS hands the datapath: peers (by the small integer id src/io/datapath.ts gives them),
 * their endpoints and sessions, and the index table that finds a session by the receiver
 * index of a transport message (§5.4.6). Every function here runs on the JS thread with the
 * write lock held, except dp_peer_endpoint (any thread, per-peer mutex).
 */
#include "datapath.h"
#include "flowcache.h"

#include <stdlib.h>
#include <string.h>

/* At most this many peers: the id space JS allocates from (src/io/datapath.ts). */
#define DP_MAX_PEERS (1u << 20)

void dp_wipe(void *p, size_t n) {
  /* A volatile pointer so the compiler cannot drop the stores as dead. */
  volatile uint8_t *v = p;
  while (n--) *v++ = 0;
}

dp *dp_create(uint32_t mtu) {
  dp *d = calloc(1, sizeof *d);
  if (d == NULL) return NULL;
  pthread_rwlock_init(&d->lock, NULL);
  pthread_mutex_init(&d->ev_lock, NULL);
  d->mtu = mtu;
  d->tun_fd = d->udp4 = d->udp6 = d->stop_fd = -1;
  return d;
}

static void free_keypair(dp_keypair *kp) {
  dp_wipe(kp, sizeof *kp);
  free(kp);
}

static void index_insert(dp *d, dp_keypair *kp);

static int index_resize(dp *d, uint32_t cap) {
  dp_keypair **old = d->index;
  uint32_t old_cap = d->index_cap;
  dp_keypair **next = calloc(cap, sizeof *next);
  if (next == NULL) return -1;
  d->index = next;
  d->index_cap = cap;
  d->index_used = 0;
  for (uint32_t i = 0; i < old_cap; i++)
    if (old[i] != NULL && old[i] != DP_TOMBSTONE) index_insert(d, old[i]);
  free(old);
  return 0;
}

/* The table has room: dp_index_reserve ran first. */
static void index_insert(dp *d, dp_keypair *kp) {
  uint32_t mask = d->index_cap - 1;
  uint32_t i = dp_index_hash(kp->local_index) & mask;
  while (d->index[i] != NULL && d->index[i] != DP_TOMBSTONE) i = (i + 1) & mask;
  d->index[i] = kp;
  d->index_used++;
}

static int index_reserve(dp *d, uint32_t more) {
  /* Tombstones count as used until a resize sweeps them; keep the load under a half. */
  if (d->index_cap && (d->index_used + more) * 2 <= d->index_cap) return 0;
  /* Size the new table for the live entries only (the resize drops the tombstones), at most a
   * quarter full: sized by index_used, key rotation would double it at every sweep. */
  uint32_t live = 0;
  for (uint32_t i = 0; i < d->index_cap; i++) live += d->index[i] != NULL && d->index[i] != DP_TOMBSTONE;
  uint32_t cap = 64;
  while ((live + more) * 4 > cap) cap <<= 1;
  return index_resize(d, cap);
}

static void index_remove(dp *d, dp_keypair *kp) {
  uint32_t mask = d->index_cap - 1;
  for (uint32_t i = dp_index_hash(kp->local_index) & mask, n = 0; n < d->index_cap && d->index[i] != NULL;
       i = (i + 1) & mask, n++) {
    if (d->index[i] == kp) {
      d->index[i] = DP_TOMBSTONE;
      return;
    }
  }
}

dp_peer *dp_peer_get(const dp *d, uint32_t id) { return id < d->peers_cap ? d->peers[id] : NULL; }

int dp_peer_upsert(dp *d, uint32_t id) {
  if (id >= DP_MAX_PEERS) return -1;
  if (id >= d->peers_cap) {
    uint32_t cap = d->peers_cap ? d->peers_cap : 16;
    while (cap <= id) cap <<= 1;
    dp_peer **next = realloc(d->peers, cap * sizeof *next);
    if (next == NULL) return -1;
    memset(next + d->peers_cap, 0, (cap - d->peers_cap) * sizeof *next);
    d->peers = next;
    d->peers_cap = cap;
  }
  if (d->peers[id] != NULL) return 0;
  dp_peer *p = calloc(1, sizeof *p);
  if (p == NULL) return -1;
  p->id = id;
  pthread_mutex_init(&p->ep_lock, NULL);
  d->peers[id] = p;
  return 0;
}

static void drop_keypair(dp *d, dp_keypair *kp) {
  index_remove(d, kp);
  free_keypair(kp);
}

void dp_peer_remove(dp *d, uint32_t id) {
  dp_peer *p = dp_peer_get(d, id);
  if (p == NULL) return;
  for (int i = 0; i < 3; i++)
    if (p->kp[i]) drop_keypair(d, p->kp[i]);
  pthread_mutex_destroy(&p->ep_lock);
  dp_wipe(p, sizeof *p);
  free(p);
  d->peers[id] = NULL;
}

int dp_peer_set_endpoint(dp_peer *p, const dp_endpoint *ep) {
  pthread_mutex_lock(&p->ep_lock);
  if (ep) p->ep = *ep;
  else memset(&p->ep, 0, sizeof p->ep);
  pthread_mutex_unlock(&p->ep_lock);
  return 0;
}

void dp_peer_endpoint(dp_peer *p, dp_endpoint *out) {
  pthread_mutex_lock(&p->ep_lock);
  *out = p->ep;
  pthread_mutex_unlock(&p->ep_lock);
}

static dp_keypair *find_session(dp_peer *p, uint32_t local_index) {
  for (int o = 0; o < 3; o++)
    if (p->kp[o] && p->kp[o]->local_index == local_index) return p->kp[o];
  return NULL;
}

int dp_peer_set_keypairs(dp *d, dp_peer *p, const dp_keypair_spec spec[3]) {
  dp_keypair *fresh[3] = {NULL, NULL, NULL}, *next[3] = {NULL, NULL, NULL};
  if (index_reserve(d, 3) != 0) return -1;
  /* Allocate first, so a failure changes nothing. */
  for (int s = 0; s < 3; s++) {
    if (!spec[s].present || find_session(p, spec[s].local_index)) continue;
    if ((fresh[s] = calloc(1, sizeof *fresh[s])) == NULL) {
      for (int k = 0; k < s; k++) free(fresh[k]);
      return -1;
    }
  }
  for (int s = 0; s < 3; s++) {
    if (!spec[s].present) continue;
    dp_keypair *kp = fresh[s];
    if (kp == NULL) {
      /* The same session (by local index) keeps its counter and replay window. */
      kp = find_session(p, spec[s].local_index);
      for (int o = 0; o < 3; o++)
        if (p->kp[o] == kp) p->kp[o] = NULL;
    } else {
      memcpy(kp->send_key, spec[s].send_key, DP_KEY_LEN);
      memcpy(kp->recv_key, spec[s].recv_key, DP_KEY_LEN);
      kp->local_index = spec[s].local_index;
      kp->remote_index = spec[s].remote_index;
      kp->created = spec[s].created;
      kp->is_initiator = spec[s].is_initiator;
      atomic_store(&kp->send_counter, spec[s].send_counter);
      kp->peer = p;
      index_insert(d, kp);
    }
    kp->sending_valid = spec[s].sending_valid;
    next[s] = kp;
  }
  for (int o = 0; o < 3; o++)
    if (p->kp[o]) drop_keypair(d, p->kp[o]);
  for (int s = 0; s < 3; s++) p->kp[s] = next[s];
  return 0;
}

void dp_set_allowedips(dp *d, dp_allowedips *t) {
  dp_allowedips_free(d->aips);
  d->aips = t;
}

void dp_destroy(dp *d) {
  if (d == NULL) return;
  for (uint32_t i = 0; i < d->peers_cap; i++) dp_peer_remove(d, i);
  free(d->peers);
  free(d->index);
  dp_allowedips_free(d->aips);
  if (d->flows) meshd_flowcache_free(d->flows);
  dp_free_events(d->ev_head);
  pthread_rwlock_destroy(&d->lock);
  pthread_mutex_destroy(&d->ev_lock);
  free(d);
}
