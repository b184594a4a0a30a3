/*
 * Module registration. The addon is context-aware (NAPI_MODULE_INIT): each environment
 * (main thread, every worker) gets its own exports and its own list of readers.
 */
#include "meshd_native.h"

#include <stdlib.h>
#include <unistd.h>

meshd_state *meshd_state_of(napi_env env) {
  void *state = NULL;
  if (napi_get_instance_data(env, &state) != napi_ok) return NULL;
  return state;
}

bool meshd_state_add_fd(meshd_state *state, int fd) {
  if (state->nfds == state->fds_cap) {
    size_t cap = state->fds_cap == 0 ? 8 : state->fds_cap * 2;
    int *fds = realloc(state->fds, cap * sizeof *fds);
    if (fds == NULL) return false;
    state->fds = fds;
    state->fds_cap = cap;
  }
  state->fds[state->nfds++] = fd;
  return true;
}

void meshd_state_remove_fd(meshd_state *state, int fd) {
  for (size_t i = 0; i < state->nfds; i++) {
    if (state->fds[i] == fd) {
      state->fds[i] = state->fds[--state->nfds];
      return;
    }
  }
}

/* The environment is going away (process exit, or a worker ending without closing its
 * devices). Readers were stopped by their cleanup hooks, which run first; the TUN fds
 * still open are closed so a worker's interfaces do not outlive it. */
static void free_state(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  meshd_state *state = data;
  meshd_readers_detach(state);
  for (size_t i = 0; i < state->nfds; i++) close(state->fds[i]);
  free(state->fds);
  free(state);
}

#define METHOD(js_name, fn) \
  { js_name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL }

NAPI_MODULE_INIT() {
  meshd_state *state = calloc(1, sizeof *state);
  if (state == NULL) {
    napi_throw_error(env, "ENOMEM", "meshd native: out of memory");
    return NULL;
  }
  if (napi_set_instance_data(env, state, free_state, NULL) != napi_ok) {
    free(state);
    meshd_throw_napi_failure(env, "napi_set_instance_data");
    return NULL;
  }
  napi_value max_name;
  MESHD_CALL(env, napi_create_uint32(env, MESHD_IFNAME_MAX, &max_name));
  napi_property_descriptor props[] = {
      METHOD("open", meshd_tun_open),
      METHOD("close", meshd_tun_close),
      METHOD("startReading", meshd_tun_start_reading),
      METHOD("stopReading", meshd_tun_stop_reading),
      METHOD("readerStats", meshd_tun_reader_stats),
      METHOD("write", meshd_tun_write),
      METHOD("writeBatch", meshd_tun_write_batch),
      METHOD("setSocketBuffers", meshd_set_socket_buffers),
      METHOD("setSocketMark", meshd_set_socket_mark),
      METHOD("aeadSeal", meshd_aead_seal),
      METHOD("aeadOpen", meshd_aead_open),
      {"maxNameLength", NULL, NULL, NULL, NULL, max_name, napi_enumerable, NULL},
  };
  MESHD_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  if (!meshd_datapath_register(env, exports)) {
    meshd_throw_napi_failure(env, "registering the datapath");
    return NULL;
  }
  return exports;
}
