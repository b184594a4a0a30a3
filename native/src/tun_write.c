/*
 * Writing packets into the kernel through a TUN fd. A TUN takes exactly one packet per
 * write(); the fd is non-blocking, so nothing here waits.
 *
 * write(fd, buffer: Uint8Array, offset, length) -> number
 *   > 0  bytes written (the whole packet)
 *   0    EAGAIN: the kernel queue is full and the packet was dropped (the caller counts it)
 *   < 0  -errno for a packet the kernel refused (EINVAL: not IPv4/IPv6, EMSGSIZE, ENOBUFS,
 *        ENOMEM, EIO: interface down); also a drop to count
 *   throws for fd-level failures (EBADF, EBADFD: interface deleted, EFAULT, ...)
 * writeBatch(fd, buffer, offsets: Uint32Array, lengths: Uint32Array, count) -> number
 *   Writes packet i = buffer[offsets[i] .. offsets[i] + lengths[i]) for i < count, in one
 *   native call. Returns how many the kernel accepted: refused packets are skipped, and the
 *   first EAGAIN ends the batch (the rest would be dropped too). Throws like write().
 */
#include "meshd_native.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* Per-packet outcomes that are drops, not failures of the fd. */
static bool is_packet_error(int err) {
  switch (err) {
  case EAGAIN:
  case EINVAL:
  case EMSGSIZE:
  case ENOBUFS:
  case ENOMEM:
  case EIO:
    return true;
  default:
    return false;
  }
}

/* Returns bytes written or -errno. */
static ssize_t write_packet(int fd, const uint8_t *packet, size_t len) {
  ssize_t n;
  do {
    n = write(fd, packet, len);
  } while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

static void throw_write_failure(napi_env env, int err, int fd) {
  if (err == EBADFD) {
    meshd_throw_errno(env, err, "write",
                      "TUN write failed: the interface was deleted or detached from fd %d", fd);
  } else {
    meshd_throw_errno(env, err, "write", "TUN write to fd %d failed: %s", fd, strerror(err));
  }
}

static bool check_span(napi_env env, size_t size, uint32_t offset, uint32_t length,
                       const char *which) {
  if ((uint64_t)offset + length > size) {
    meshd_throw_range(env, "%s: offset %u + length %u is past the end of a %zu-byte buffer",
                      which, offset, length, size);
    return false;
  }
  return true;
}

napi_value meshd_tun_write(napi_env env, napi_callback_info info) {
  napi_value argv[4], result;
  int fd;
  uint8_t *data;
  size_t size;
  uint32_t offset, length;
  if (!meshd_get_args(env, info, 4, argv) || !meshd_get_fd(env, argv[0], &fd) ||
      !meshd_get_bytes(env, argv[1], "buffer", &data, &size) ||
      !meshd_get_u32(env, argv[2], "offset", &offset) ||
      !meshd_get_u32(env, argv[3], "length", &length) ||
      !check_span(env, size, offset, length, "write")) {
    return NULL;
  }
  ssize_t n = write_packet(fd, length > 0 ? data + offset : data, length);
  if (n < 0 && !is_packet_error((int)-n)) {
    throw_write_failure(env, (int)-n, fd);
    return NULL;
  }
  if (n == -EAGAIN) n = 0;
  MESHD_CALL(env, napi_create_int32(env, (int32_t)n, &result));
  return result;
}

napi_value meshd_tun_write_batch(napi_env env, napi_callback_info info) {
  napi_value argv[5], result;
  int fd;
  uint8_t *data;
  uint32_t *offsets, *lengths, count;
  size_t size, n_offsets, n_lengths;
  if (!meshd_get_args(env, info, 5, argv) || !meshd_get_fd(env, argv[0], &fd) ||
      !meshd_get_bytes(env, argv[1], "buffer", &data, &size) ||
      !meshd_get_u32_array(env, argv[2], "offsets", &offsets, &n_offsets) ||
      !meshd_get_u32_array(env, argv[3], "lengths", &lengths, &n_lengths) ||
      !meshd_get_u32(env, argv[4], "count", &count)) {
    return NULL;
  }
  if (count > n_offsets || count > n_lengths) {
    meshd_throw_range(env, "writeBatch: count %u exceeds offsets (%zu) or lengths (%zu)", count,
                      n_offsets, n_lengths);
    return NULL;
  }
  /* Check every span first so a bad entry cannot leave a half-written batch behind. */
  for (uint32_t i = 0; i < count; i++) {
    if (!check_span(env, size, offsets[i], lengths[i], "writeBatch")) return NULL;
  }
  uint32_t written = 0;
  for (uint32_t i = 0; i < count; i++) {
    ssize_t n = write_packet(fd, lengths[i] > 0 ? data + offsets[i] : data, lengths[i]);
    if (n >= 0) {
      written++;
    } else if (n == -EAGAIN) {
      break;
    } else if (!is_packet_error((int)-n)) {
      throw_write_failure(env, (int)-n, fd);
      return NULL;
    }
  }
  MESHD_CALL(env, napi_create_uint32(env, written, &result));
  return result;
}
