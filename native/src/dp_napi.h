/*
 * What the datapath's Node-API files share: the handle JS holds (an external) and the
 * argument helpers. dp_napi.c has the functions that drive the datapath, dp_napi_stats.c
 * those that read its counters.
 */
#ifndef MESHD_DP_NAPI_H
#define MESHD_DP_NAPI_H

#include "datapath.h"

#include <node_api.h>

/* Numbers per peer in dpPeerStats (src/io/datapath.ts PEER_STATS). */
#define DP_PEER_STATS 10

typedef struct handle {
  dp *d;
  napi_env env;
  napi_threadsafe_function tsfn;
  napi_ref on_event;
  EVP_CIPHER_CTX *ctx; /* JS-thread sends */
  bool closed;
  /* The JS external and the thread-safe function each hold one: a call_js still queued after
   * close must find the struct alive, so it goes when both are finalized. */
  int refs;
} handle;

/* The first n arguments, the first of which must be an open datapath handle; NULL (with a JS
 * exception pending) otherwise. */
handle *dp_handle_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv);
napi_value dp_napi_undefined(napi_env env);

/* dp_napi_stats.c */
napi_value dp_peer_stats_js(napi_env env, napi_callback_info info);
napi_value dp_stats_js(napi_env env, napi_callback_info info);

#endif /* MESHD_DP_NAPI_H */
