/*
 * Node-API surface of the native datapath. src/io/datapath.ts is its only user.
 *
 *   dpCreate(tunFd, vnetHdr, port, mtu, onEvent) -> handle     (sockets bound, threads not started)
 *   dpAddQueue(h, fd)                        another queue of a multi-queue TUN (before dpStart)
 *   dpStart(h), dpClose(h), dpPort(h) -> number, dpNow() -> native monotonic ms
 *   dpSetPeer(h, id, address|"", port)       creates the peer or updates its endpoint
 *   dpRemovePeer(h, id)                       wipes its sessions
 *   dpSetKeypairs(h, id, [current, previous, next])   each null or
 *       { localIndex, remoteIndex, sendKey, receiveKey, created, isInitiator, sendingValid, sendingCounter }
 *   dpSetAllowedIps(h, entries: Uint8Array)  24 bytes each: peer id u32 LE, family 4|6, cidr, 2 zero, 16 address
 *   dpSendPlain(h, id, packets[]) -> how many were sealed and sent (the rest need a session)
 *   dpSendRaw(h, packet, address, port)      a handshake message
 *   dpTunWrite(h, packet)                    a packet JS's filter accepted
 *   dpSetFilter(h, on), dpFlowAdmit(h, packet, flags), dpFlowForget(h)
 *   dpPeerStats(h, ids: Uint32Array, out: Float64Array)  DP_PEER_STATS numbers per id
 *   dpStats(h) -> { drops: {...}, ... }     (those two: dp_napi_stats.c)
 *   dpSetMark(h, mark), dpRebind(h, port)
 *
 * onEvent(kind, peerId, arg, data: Buffer|null, address|null, port) runs on the JS thread for
 * each event (datapath.h DP_EV_*), in order.
 */
#include "datapath.h"
#include "flowcache.h"
#include "dp_napi.h"
#include "meshd_native.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>


static void unref_handle(handle *h) {
  if (--h->refs == 0) free(h);
}

static void wake_js(dp *d) {
  handle *h = d->ev_wake_ctx;
  napi_call_threadsafe_function(h->tsfn, NULL, napi_tsfn_nonblocking);
}

static napi_value endpoint_value(napi_env env, const dp_endpoint *ep, uint32_t *port) {
  napi_value v;
  char text[INET6_ADDRSTRLEN] = "";
  *port = 0;
  if (ep->len == 0) {
    napi_get_null(env, &v);
    return v;
  }
  if (ep->addr.sa.sa_family == AF_INET) {
    inet_ntop(AF_INET, &ep->addr.v4.sin_addr, text, sizeof text);
    *port = ntohs(ep->addr.v4.sin_port);
  } else {
    inet_ntop(AF_INET6, &ep->addr.v6.sin6_addr, text, sizeof text);
    *port = ntohs(ep->addr.v6.sin6_port);
  }
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &v);
  return v;
}

/* Runs on the JS thread: hands every queued event to onEvent. */
static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)js_cb;
  (void)data;
  handle *h = context;
  if (env == NULL || h->closed) return;
  dp_event *list = dp_take_events(h->d);
  napi_value cb, global;
  if (napi_get_reference_value(env, h->on_event, &cb) != napi_ok || napi_get_global(env, &global) != napi_ok) {
    dp_free_events(list);
    return;
  }
  for (dp_event *e = list; e; e = e->next) {
    napi_value argv[6];
    uint32_t port;
    napi_create_uint32(env, e->kind, &argv[0]);
    napi_create_int64(env, e->peer_id == UINT32_MAX ? -1 : (int64_t)e->peer_id, &argv[1]);
    napi_create_uint32(env, e->arg, &argv[2]);
    if (e->len) {
      void *copy;
      napi_create_buffer_copy(env, e->len, e->data, &copy, &argv[3]);
    } else {
      napi_get_null(env, &argv[3]);
    }
    argv[4] = endpoint_value(env, &e->from, &port);
    napi_create_uint32(env, port, &argv[5]);
    napi_value ignored;
    if (napi_call_function(env, global, cb, 6, argv, &ignored) != napi_ok) {
      /* A throwing handler must not lose the rest of the batch; report it as uncaught. */
      napi_value exc;
      if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
    }
    if (h->closed) break;
  }
  dp_free_events(list);
}

static void close_handle(handle *h) {
  if (h->closed) return;
  h->closed = true;
  dp_stop(h->d);
  dp_close_sockets(h->d);
  if (h->tsfn) napi_release_threadsafe_function(h->tsfn, napi_tsfn_abort);
  h->tsfn = NULL;
  if (h->on_event) napi_delete_reference(h->env, h->on_event);
  h->on_event = NULL;
  if (h->ctx) EVP_CIPHER_CTX_free(h->ctx);
  h->ctx = NULL;
  dp_destroy(h->d);
  h->d = NULL;
}

static void finalize_handle(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  handle *h = data;
  close_handle(h);
  unref_handle(h);
}

static void finalize_tsfn(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  unref_handle(data);
}

static handle *get_handle(napi_env env, napi_value v) {
  handle *h = NULL;
  if (napi_get_value_external(env, v, (void **)&h) != napi_ok || h == NULL) {
    meshd_throw_type(env, "not a datapath handle");
    return NULL;
  }
  if (h->closed) {
    napi_throw_error(env, "ECLOSED", "the datapath is closed");
    return NULL;
  }
  return h;
}

handle *dp_handle_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  if (!meshd_get_args(env, info, n, argv)) return NULL;
  return get_handle(env, argv[0]);
}

static bool parse_endpoint(napi_env env, napi_value addr, napi_value portv, dp_endpoint *ep) {
  char text[INET6_ADDRSTRLEN + 1];
  size_t n = 0;
  uint32_t port;
  memset(ep, 0, sizeof *ep);
  if (napi_get_value_string_utf8(env, addr, text, sizeof text, &n) != napi_ok) {
    meshd_throw_type(env, "address must be a string");
    return false;
  }
  if (!meshd_get_u32(env, portv, "port", &port)) return false;
  if (n == 0) return true; /* no endpoint */
  if (port == 0 || port > 65535) {
    meshd_throw_range(env, "port must be in 1..65535");
    return false;
  }
  if (inet_pton(AF_INET, text, &ep->addr.v4.sin_addr) == 1) {
    ep->addr.v4.sin_family = AF_INET;
    ep->addr.v4.sin_port = htons((uint16_t)port);
    ep->len = sizeof ep->addr.v4;
  } else if (inet_pton(AF_INET6, text, &ep->addr.v6.sin6_addr) == 1) {
    ep->addr.v6.sin6_family = AF_INET6;
    ep->addr.v6.sin6_port = htons((uint16_t)port);
    ep->len = sizeof ep->addr.v6;
  } else {
    meshd_throw_type(env, "address %s is not an IPv4 or IPv6 address", text);
    return false;
  }
  return true;
}

napi_value dp_napi_undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

static napi_value dp_create_js(napi_env env, napi_callback_info info) {
  napi_value argv[5], result, name;
  int tun_fd;
  bool vnet;
  uint32_t port, mtu;
  if (!meshd_get_args(env, info, 5, argv) || !meshd_get_fd(env, argv[0], &tun_fd) || !meshd_get_bool(env, argv[1], "vnetHdr", &vnet) ||
      !meshd_get_u32(env, argv[2], "port", &port) || !meshd_get_u32(env, argv[3], "mtu", &mtu))
    return NULL;
  if (port > 65535 || mtu < 576 || mtu > 9200) {
    meshd_throw_range(env, "port must be 0..65535 and mtu 576..9200");
    return NULL;
  }
  handle *h = calloc(1, sizeof *h);
  dp *d = dp_create(mtu);
  if (h == NULL || d == NULL || (h->ctx = EVP_CIPHER_CTX_new()) == NULL) {
    free(h);
    dp_destroy(d);
    meshd_throw_errno(env, ENOMEM, "calloc", "out of memory");
    return NULL;
  }
  h->d = d;
  h->env = env;
  d->tun_fd = tun_fd;
  d->vnet_hdr = vnet;
  int err = dp_open_sockets(d, (uint16_t)port);
  if (err < 0) {
    EVP_CIPHER_CTX_free(h->ctx);
    dp_destroy(d);
    free(h);
    meshd_throw_errno(env, -err, "bind", err == -EADDRINUSE ? "UDP port %u is already in use" : "cannot open UDP port %u", port);
    return NULL;
  }
  if (napi_create_reference(env, argv[4], 1, &h->on_event) != napi_ok ||
      napi_create_string_utf8(env, "meshd.datapath", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, h, finalize_tsfn, h, call_js, &h->tsfn) != napi_ok) {
    close_handle(h);
    free(h);
    meshd_throw_napi_failure(env, "napi_create_threadsafe_function");
    return NULL;
  }
  h->refs = 2;
  /* The daemon's other handles keep the loop alive; this one must not keep a closed one. */
  napi_unref_threadsafe_function(env, h->tsfn);
  d->ev_wake = wake_js;
  d->ev_wake_ctx = h;
  if (napi_create_external(env, h, finalize_handle, NULL, &result) != napi_ok) {
    close_handle(h);
    unref_handle(h); /* the tsfn's finalizer frees it */
    meshd_throw_napi_failure(env, "napi_create_external");
    return NULL;
  }
  return result;
}

/* dpAddQueue(h, fd): another queue of the same multi-queue TUN, read by its own TX thread. */
static napi_value dp_add_queue_js(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  handle *h;
  int fd;
  if ((h = dp_handle_args(env, info, 2, argv)) == NULL || !meshd_get_fd(env, argv[1], &fd)) return NULL;
  dp *d = h->d;
  if (d->running) {
    napi_throw_error(env, "EBUSY", "queues are added before dpStart");
    return NULL;
  }
  if (d->nqueues == 0) {
    d->tun_queues[0] = d->tun_fd;
    d->nqueues = 1;
  }
  if (d->nqueues == DP_MAX_QUEUES) {
    meshd_throw_range(env, "at most %d TUN queues", DP_MAX_QUEUES);
    return NULL;
  }
  d->tun_queues[d->nqueues++] = fd;
  return dp_napi_undefined(env);
}

static napi_value dp_start_js(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  handle *h;
  if ((h = dp_handle_args(env, info, 1, argv)) == NULL) return NULL;
  int err = dp_start(h->d);
  if (err < 0) meshd_throw_errno(env, -err, "pthread_create", "cannot start the datapath threads");
  return dp_napi_undefined(env);
}

static napi_value dp_close_js(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  handle *h = NULL;
  if (!meshd_get_args(env, info, 1, argv)) return NULL;
  if (napi_get_value_external(env, argv[0], (void **)&h) == napi_ok && h) close_handle(h);
  return dp_napi_undefined(env);
}

static napi_value dp_port_js(napi_env env, napi_callback_info info) {
  napi_value argv[1], r;
  handle *h;
  if ((h = dp_handle_args(env, info, 1, argv)) == NULL) return NULL;
  napi_create_uint32(env, h->d->port, &r);
  return r;
}

static napi_value dp_now_js(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  napi_create_double(env, (double)dp_now_ms(), &r);
  return r;
}

static napi_value dp_set_peer_js(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  handle *h;
  uint32_t id;
  dp_endpoint ep;
  if ((h = dp_handle_args(env, info, 4, argv)) == NULL || !meshd_get_u32(env, argv[1], "id", &id) ||
      !parse_endpoint(env, argv[2], argv[3], &ep))
    return NULL;
  pthread_rwlock_wrlock(&h->d->lock);
  int err = dp_peer_upsert(h->d, id);
  if (err == 0) dp_peer_set_endpoint(dp_peer_get(h->d, id), ep.len ? &ep : NULL);
  pthread_rwlock_unlock(&h->d->lock);
  if (err) meshd_throw_range(env, "cannot add peer %u", id);
  return dp_napi_undefined(env);
}

static napi_value dp_remove_peer_js(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  handle *h;
  uint32_t id;
  if ((h = dp_handle_args(env, info, 2, argv)) == NULL || !meshd_get_u32(env, argv[1], "id", &id)) return NULL;
  pthread_rwlock_wrlock(&h->d->lock);
  dp_peer_remove(h->d, id);
  pthread_rwlock_unlock(&h->d->lock);
  return dp_napi_undefined(env);
}

static bool prop(napi_env env, napi_value obj, const char *key, napi_value *out) {
  if (napi_get_named_property(env, obj, key, out) != napi_ok) {
    meshd_throw_type(env, "keypair.%s is missing", key);
    return false;
  }
  return true;
}

static bool read_spec(napi_env env, napi_value v, dp_keypair_spec *s) {
  napi_valuetype t;
  napi_value f;
  memset(s, 0, sizeof *s);
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t == napi_null || t == napi_undefined) return true;
  uint8_t *key;
  size_t len;
  double created, counter;
  bool b;
  if (!prop(env, v, "localIndex", &f) || !meshd_get_u32(env, f, "localIndex", &s->local_index) || !prop(env, v, "remoteIndex", &f) ||
      !meshd_get_u32(env, f, "remoteIndex", &s->remote_index))
    return false;
  if (!prop(env, v, "sendKey", &f) || !meshd_get_bytes(env, f, "sendKey", &key, &len)) return false;
  if (len != DP_KEY_LEN) goto bad_key;
  memcpy(s->send_key, key, DP_KEY_LEN);
  if (!prop(env, v, "receiveKey", &f) || !meshd_get_bytes(env, f, "receiveKey", &key, &len)) return false;
  if (len != DP_KEY_LEN) goto bad_key;
  memcpy(s->recv_key, key, DP_KEY_LEN);
  if (!prop(env, v, "created", &f) || napi_get_value_double(env, f, &created) != napi_ok || !(created >= 0)) {
    meshd_throw_type(env, "keypair.created must be a non-negative number");
    return false;
  }
  if (!prop(env, v, "sendingCounter", &f) || napi_get_value_double(env, f, &counter) != napi_ok || !(counter >= 0)) {
    meshd_throw_type(env, "keypair.sendingCounter must be a non-negative number");
    return false;
  }
  s->created = (uint64_t)created;
  s->send_counter = (uint64_t)counter;
  if (!prop(env, v, "isInitiator", &f) || !meshd_get_bool(env, f, "isInitiator", &b)) return false;
  s->is_initiator = b;
  if (!prop(env, v, "sendingValid", &f) || !meshd_get_bool(env, f, "sendingValid", &b)) return false;
  s->sending_valid = b;
  s->present = true;
  return true;
bad_key:
  meshd_throw_range(env, "keypair keys must be %d bytes", DP_KEY_LEN);
  return false;
}

static napi_value dp_set_keypairs_js(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  handle *h;
  uint32_t id;
  dp_keypair_spec spec[3];
  if ((h = dp_handle_args(env, info, 3, argv)) == NULL || !meshd_get_u32(env, argv[1], "id", &id)) return NULL;
  for (uint32_t i = 0; i < 3; i++) {
    napi_value el;
    if (napi_get_element(env, argv[2], i, &el) != napi_ok || !read_spec(env, el, &spec[i])) {
      dp_wipe(spec, sizeof spec);
      return NULL;
    }
  }
  for (int i = 0; i < 3; i++)
    for (int j = i + 1; j < 3; j++)
      if (spec[i].present && spec[j].present && spec[i].local_index == spec[j].local_index) {
        dp_wipe(spec, sizeof spec);
        meshd_throw_range(env, "two keypairs with local index %u", spec[i].local_index);
        return NULL;
      }
  pthread_rwlock_wrlock(&h->d->lock);
  dp_peer *p = dp_peer_get(h->d, id);
  int err = p ? dp_peer_set_keypairs(h->d, p, spec) : -2;
  pthread_rwlock_unlock(&h->d->lock);
  dp_wipe(spec, sizeof spec);
  if (err == -2) meshd_throw_range(env, "no peer %u", id);
  else if (err) meshd_throw_errno(env, ENOMEM, "calloc", "out of memory");
  return dp_napi_undefined(env);
}

static napi_value dp_set_allowed_ips_js(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  handle *h;
  uint8_t *buf;
  size_t len;
  if ((h = dp_handle_args(env, info, 2, argv)) == NULL || !meshd_get_bytes(env, argv[1], "entries", &buf, &len))
    return NULL;
  if (len % 24) {
    meshd_throw_range(env, "entries must be 24 bytes each");
    return NULL;
  }
  size_t n = len / 24;
  dp_aip_entry *e = n ? calloc(n, sizeof *e) : NULL;
  if (n && e == NULL) {
    meshd_throw_errno(env, ENOMEM, "calloc", "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    const uint8_t *p = buf + i * 24;
    e[i].peer_id = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    e[i].family = p[4];
    e[i].cidr = p[5];
    memcpy(e[i].addr, p + 8, 16);
  }
  dp_allowedips *t = dp_allowedips_build(e, n);
  free(e);
  if (t == NULL) {
    meshd_throw_errno(env, ENOMEM, "malloc", "out of memory");
    return NULL;
  }
  pthread_rwlock_wrlock(&h->d->lock);
  dp_set_allowedips(h->d, t);
  pthread_rwlock_unlock(&h->d->lock);
  return dp_napi_undefined(env);
}

#define DP_SEND_MAX 256

static napi_value dp_send_plain_js(napi_env env, napi_callback_info info) {
  napi_value argv[3], r;
  handle *h;
  uint32_t id, n;
  uint8_t *pkts[DP_SEND_MAX];
  size_t lens[DP_SEND_MAX];
  if ((h = dp_handle_args(env, info, 3, argv)) == NULL || !meshd_get_u32(env, argv[1], "id", &id)) return NULL;
  if (napi_get_array_length(env, argv[2], &n) != napi_ok || n > DP_SEND_MAX) {
    meshd_throw_range(env, "packets must be an array of at most %d", DP_SEND_MAX);
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    if (napi_get_element(env, argv[2], i, &el) != napi_ok || !meshd_get_bytes(env, el, "packet", &pkts[i], &lens[i])) return NULL;
  }
  pthread_rwlock_rdlock(&h->d->lock);
  dp_peer *p = dp_peer_get(h->d, id);
  int sent = p ? dp_send_plaintexts(h->d, h->ctx, p, pkts, lens, (int)n) : 0;
  pthread_rwlock_unlock(&h->d->lock);
  napi_create_int32(env, sent, &r);
  return r;
}

static napi_value dp_send_raw_js(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  handle *h;
  uint8_t *data;
  size_t len;
  dp_endpoint ep;
  if ((h = dp_handle_args(env, info, 4, argv)) == NULL || !meshd_get_bytes(env, argv[1], "packet", &data, &len) ||
      !parse_endpoint(env, argv[2], argv[3], &ep))
    return NULL;
  if (ep.len) dp_send_raw(h->d, data, len, &ep);
  return dp_napi_undefined(env);
}

static napi_value dp_tun_write_js(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  handle *h;
  uint8_t *data;
  size_t len;
  if ((h = dp_handle_args(env, info, 2, argv)) == NULL || !meshd_get_bytes(env, argv[1], "packet", &data, &len))
    return NULL;
  if (len > 65535) {
    meshd_throw_range(env, "packet too long");
    return NULL;
  }
  dp_tun_write_copy(h->d, data, len);
  return dp_napi_undefined(env);
}

static napi_value dp_set_filter_js(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  handle *h;
  bool on;
  if ((h = dp_handle_args(env, info, 2, argv)) == NULL || !meshd_get_bool(env, argv[1], "on", &on)) return NULL;
  meshd_flowcache *fc = NULL;
  if (on) {
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed) {
      meshd_throw_errno(env, errno, "getrandom", "no randomness for the flow table");
      return NULL;
    }
    fc = meshd_flowcache_new(0, 0, NULL, seed);
    if (fc == NULL) {
      meshd_throw_errno(env, ENOMEM, "malloc", "cannot allocate the flow table");
      return NULL;
    }
  }
  pthread_rwlock_wrlock(&h->d->lock);
  meshd_flowcache *old = h->d->flows;
  if (on && old) {
    pthread_rwlock_unlock(&h->d->lock);
    meshd_flowcache_free(fc); /* already filtering: keep the flows */
    return dp_napi_undefined(env);
  }
  h->d->flows = fc;
  h->d->flows_gen++;
  pthread_rwlock_unlock(&h->d->lock);
  if (old) meshd_flowcache_free(old);
  return dp_napi_undefined(env);
}

static napi_value dp_flow_admit_js(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  handle *h;
  uint8_t *data;
  size_t len;
  uint32_t flags;
  if ((h = dp_handle_args(env, info, 3, argv)) == NULL || !meshd_get_bytes(env, argv[1], "packet", &data, &len) ||
      !meshd_get_u32(env, argv[2], "flags", &flags))
    return NULL;
  pthread_rwlock_rdlock(&h->d->lock);
  if (h->d->flows) meshd_flowcache_admit(h->d->flows, data, len, dp_now_ms(), flags);
  pthread_rwlock_unlock(&h->d->lock);
  return dp_napi_undefined(env);
}

static napi_value dp_flow_forget_js(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  handle *h;
  if ((h = dp_handle_args(env, info, 1, argv)) == NULL) return NULL;
  pthread_rwlock_rdlock(&h->d->lock);
  if (h->d->flows) meshd_flowcache_forget_inbound(h->d->flows);
  pthread_rwlock_unlock(&h->d->lock);
  return dp_napi_undefined(env);
}

static napi_value dp_set_mark_js(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  handle *h;
  uint32_t mark;
  if ((h = dp_handle_args(env, info, 2, argv)) == NULL || !meshd_get_u32(env, argv[1], "mark", &mark)) return NULL;
  int err = dp_set_mark(h->d, mark);
  if (err) meshd_throw_errno(env, -err, "setsockopt", "cannot set SO_MARK");
  return dp_napi_undefined(env);
}

static napi_value dp_rebind_js(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  handle *h;
  uint32_t port;
  if ((h = dp_handle_args(env, info, 2, argv)) == NULL || !meshd_get_u32(env, argv[1], "port", &port)) return NULL;
  if (port > 65535) {
    meshd_throw_range(env, "port must be 0..65535");
    return NULL;
  }
  bool was = h->d->running;
  dp_stop(h->d);
  int old4 = h->d->udp4, old6 = h->d->udp6;
  uint16_t old_port = h->d->port;
  int err = dp_open_sockets(h->d, (uint16_t)port);
  if (err == 0) {
    if (old4 >= 0) close(old4);
    if (old6 >= 0) close(old6);
  } else {
    h->d->udp4 = old4;
    h->d->udp6 = old6;
    h->d->port = old_port;
  }
  if (was) dp_start(h->d);
  if (err) meshd_throw_errno(env, -err, "bind", err == -EADDRINUSE ? "UDP port %u is already in use" : "cannot bind UDP port %u", port);
  return dp_napi_undefined(env);
}

#define METHOD(js_name, fn) {js_name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}

bool meshd_datapath_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      METHOD("dpCreate", dp_create_js),       METHOD("dpStart", dp_start_js),
      METHOD("dpAddQueue", dp_add_queue_js),
      METHOD("dpClose", dp_close_js),         METHOD("dpPort", dp_port_js),
      METHOD("dpNow", dp_now_js),             METHOD("dpSetPeer", dp_set_peer_js),
      METHOD("dpRemovePeer", dp_remove_peer_js), METHOD("dpSetKeypairs", dp_set_keypairs_js),
      METHOD("dpSetAllowedIps", dp_set_allowed_ips_js), METHOD("dpSendPlain", dp_send_plain_js),
      METHOD("dpSendRaw", dp_send_raw_js),    METHOD("dpTunWrite", dp_tun_write_js),
      METHOD("dpSetFilter", dp_set_filter_js), METHOD("dpFlowAdmit", dp_flow_admit_js),
      METHOD("dpFlowForget", dp_flow_forget_js), METHOD("dpPeerStats", dp_peer_stats_js),
      METHOD("dpStats", dp_stats_js),         METHOD("dpSetMark", dp_set_mark_js),
      METHOD("dpRebind", dp_rebind_js),
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props) == napi_ok;
}
