/*
 * The datapath's counters for JS: per peer (what the timer replay and `wg show` need, read
 * on every tick into one Float64Array) and for the whole device (drops, batching, the flow
 * cache), for status and metrics.
 */
#include "dp_napi.h"
#include "flowcache.h"
#include "meshd_native.h"

#include <string.h>

napi_value dp_peer_stats_js(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  handle *h;
  uint32_t *ids;
  size_t n;
  double *out;
  size_t out_len;
  napi_typedarray_type type;
  bool is_typed;
  if ((h = dp_handle_args(env, info, 3, argv)) == NULL || !meshd_get_u32_array(env, argv[1], "ids", &ids, &n))
    return NULL;
  if (napi_is_typedarray(env, argv[2], &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, argv[2], &type, &out_len, (void **)&out, NULL, NULL) != napi_ok || type != napi_float64_array ||
      out_len < n * DP_PEER_STATS) {
    meshd_throw_type(env, "out must be a Float64Array of %d numbers per id", DP_PEER_STATS);
    return NULL;
  }
  pthread_rwlock_rdlock(&h->d->lock);
  for (size_t i = 0; i < n; i++) {
    double *o = out + i * DP_PEER_STATS;
    dp_peer *p = dp_peer_get(h->d, ids[i]);
    memset(o, 0, DP_PEER_STATS * sizeof *o);
    if (p == NULL) continue;
    o[0] = (double)atomic_load(&p->rx_bytes);
    o[1] = (double)atomic_load(&p->tx_bytes);
    o[2] = (double)atomic_load(&p->rx_packets);
    o[3] = (double)atomic_load(&p->tx_packets);
    o[4] = (double)atomic_load(&p->t_data_sent);
    o[5] = (double)atomic_load(&p->t_auth_sent);
    o[6] = (double)atomic_load(&p->t_data_recv);
    o[7] = (double)atomic_load(&p->t_auth_recv);
    o[8] = p->kp[DP_CURRENT] ? (double)atomic_load(&p->kp[DP_CURRENT]->send_counter) : -1;
    o[9] = p->kp[DP_CURRENT] ? (double)p->kp[DP_CURRENT]->local_index : -1;
  }
  pthread_rwlock_unlock(&h->d->lock);
  return dp_napi_undefined(env);
}

static void set_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, key, n);
}

#define DP_DROP_NAME(name) #name,
static const char *const drop_names[] = {DP_DROPS(DP_DROP_NAME)};

napi_value dp_stats_js(napi_env env, napi_callback_info info) {
  napi_value argv[1], r, drops, b;
  handle *h;
  if ((h = dp_handle_args(env, info, 1, argv)) == NULL) return NULL;
  dp *d = h->d;
  napi_create_object(env, &r);
  napi_create_object(env, &drops);
  for (int i = 0; i < DP_DROP_COUNT; i++) set_num(env, drops, drop_names[i], (double)atomic_load(&d->drops[i]));
  napi_set_named_property(env, r, "drops", drops);
  set_num(env, r, "txSyscalls", (double)atomic_load(&d->tx_syscalls));
  set_num(env, r, "rxSyscalls", (double)atomic_load(&d->rx_syscalls));
  set_num(env, r, "tunReads", (double)atomic_load(&d->tun_reads));
  set_num(env, r, "tunWrites", (double)atomic_load(&d->tun_writes));
  set_num(env, r, "gsoSends", (double)atomic_load(&d->gso_sends));
  set_num(env, r, "groSegments", (double)atomic_load(&d->gro_segments));
  set_num(env, r, "coalesced", (double)atomic_load(&d->coalesced));
  napi_get_boolean(env, d->gso, &b);
  napi_set_named_property(env, r, "gso", b);
  napi_get_boolean(env, d->gro, &b);
  napi_set_named_property(env, r, "gro", b);
  napi_get_boolean(env, d->vnet_hdr, &b);
  napi_set_named_property(env, r, "tunOffload", b);
  pthread_rwlock_rdlock(&d->lock);
  if (d->flows) {
    meshd_flowcache_stats s;
    meshd_flowcache_get_stats(d->flows, &s);
    napi_value f;
    napi_create_object(env, &f);
    set_num(env, f, "flows", s.flows);
    set_num(env, f, "inboundFlows", s.inbound_flows);
    set_num(env, f, "capacity", s.capacity);
    set_num(env, f, "evictions", (double)s.evictions);
    set_num(env, f, "expired", (double)s.expired);
    set_num(env, f, "acceptedReplies", (double)atomic_load(&d->flow_accepted[MESHD_FC_IN_REPLY]));
    set_num(env, f, "acceptedAdmitted", (double)atomic_load(&d->flow_accepted[MESHD_FC_IN_ADMITTED]));
    set_num(env, f, "acceptedIcmpErrors", (double)atomic_load(&d->flow_accepted[MESHD_FC_IN_ICMP_ERROR]));
    set_num(env, f, "acceptedFragments", (double)atomic_load(&d->flow_accepted[MESHD_FC_IN_FRAGMENT]));
    napi_set_named_property(env, r, "flows", f);
  }
  pthread_rwlock_unlock(&d->lock);
  return r;
}
