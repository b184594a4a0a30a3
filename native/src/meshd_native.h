/*
 * meshd_native: TUN device I/O for meshd on Linux (Documentation/networking/tuntap.rst).
 *
 * Shared declarations between the addon's files:
 *   addon.c      module registration and per-environment state
 *   errors.c     errno -> JS Error with a stable `code`, argument checks
 *   tun_open.c   open(name, multiQueue, vnetHdr) and close(fd)
 *   tun_reader.c uv_poll batch reader: startReading / stopReading / readerStats
 *   tun_write.c  write(fd, ...) and writeBatch(fd, ...)
 *   socket_options.c  setSocketBuffers / setSocketMark for the UDP sockets
 *   aead.c       ChaCha20-Poly1305 seal/open for transport data (Node's OpenSSL)
 *
 * Everything runs on the JS thread of the environment that loaded the addon; nothing here
 * is shared between worker threads except read-only code.
 */
#ifndef MESHD_NATIVE_H
#define MESHD_NATIVE_H

#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The kernel's IFNAMSIZ (16) includes the terminating NUL. */
#define MESHD_IFNAME_MAX 15

/* Reader limits: slots are capped so one reader's ring stays below 256 MiB. */
#define MESHD_BATCH_MAX 1024u
#define MESHD_SLOT_MIN 128u
#define MESHD_SLOT_MAX (256u * 1024u)

/* Bail out of a napi_callback when a Node-API call fails (throws if nothing is pending). */
#define MESHD_CALL(env, call)                        \
  do {                                               \
    napi_status meshd_status_ = (call);              \
    if (meshd_status_ != napi_ok) {                  \
      meshd_throw_napi_failure((env), #call);        \
      return NULL;                                   \
    }                                                \
  } while (0)

typedef struct meshd_reader meshd_reader;

/* Per-environment state (main thread and each worker has its own). */
typedef struct meshd_state {
  meshd_reader *readers; /* active readers, looked up by fd */
  int *fds;              /* fds from open() not yet close()d: closed when the env goes away */
  size_t nfds, fds_cap;
} meshd_state;

/* addon.c */
meshd_state *meshd_state_of(napi_env env);
bool meshd_state_add_fd(meshd_state *state, int fd);
void meshd_state_remove_fd(meshd_state *state, int fd);

/* errors.c */
const char *meshd_errno_name(int err, char *buf, size_t len);
napi_value meshd_error(napi_env env, const char *code, const char *message);
napi_value meshd_errno_error(napi_env env, int err, const char *syscall, const char *message);
void meshd_throw_errno(napi_env env, int err, const char *syscall, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void meshd_throw_type(napi_env env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void meshd_throw_range(napi_env env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void meshd_throw_napi_failure(napi_env env, const char *what);
bool meshd_get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
bool meshd_get_fd(napi_env env, napi_value value, int *fd);
bool meshd_get_u32(napi_env env, napi_value value, const char *what, uint32_t *out);
bool meshd_get_bool(napi_env env, napi_value value, const char *what, bool *out);
bool meshd_get_bytes(napi_env env, napi_value value, const char *what, uint8_t **data, size_t *len);
bool meshd_get_u32_array(napi_env env, napi_value value, const char *what, uint32_t **data,
                         size_t *count);

/* tun_open.c */
napi_value meshd_tun_open(napi_env env, napi_callback_info info);
napi_value meshd_tun_close(napi_env env, napi_callback_info info);

/* tun_reader.c */
napi_value meshd_tun_start_reading(napi_env env, napi_callback_info info);
napi_value meshd_tun_stop_reading(napi_env env, napi_callback_info info);
napi_value meshd_tun_reader_stats(napi_env env, napi_callback_info info);
bool meshd_reader_stop_fd(meshd_state *state, int fd);
void meshd_readers_detach(meshd_state *state);

/* tun_write.c */
napi_value meshd_tun_write(napi_env env, napi_callback_info info);
napi_value meshd_tun_write_batch(napi_env env, napi_callback_info info);

/* socket_options.c */
napi_value meshd_set_socket_buffers(napi_env env, napi_callback_info info);
napi_value meshd_set_socket_mark(napi_env env, napi_callback_info info);

/* aead.c */
napi_value meshd_aead_seal(napi_env env, napi_callback_info info);
napi_value meshd_aead_open(napi_env env, napi_callback_info info);

/* dp_napi.c: the native datapath's functions (datapath.h) */
bool meshd_datapath_register(napi_env env, napi_value exports);

#endif /* MESHD_NATIVE_H */
