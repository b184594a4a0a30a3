/*
 * Options of the UDP sockets that Node's dgram does not expose.
 *
 * setSocketMark(fd, mark) -> mark now set
 *
 * SO_MARK (the UAPI's fwmark): wg-quick's policy routing sends everything but
 * packets with the tunnel's mark into the tunnel, so the tunnel's own UDP
 * packets must carry it. Needs CAP_NET_ADMIN.
 *
 * setSocketBuffers(fd, rcvBytes, sndBytes) -> { rcv, snd }
 *
 * Raises a UDP socket's kernel buffers. The default 208 KiB receive buffer is
 * where wireguard-go drops packets on this class of machine; SO_RCVBUF is
 * capped by net.core.rmem_max, so we ask with SO_RCVBUFFORCE first (allowed
 * with CAP_NET_ADMIN, which the daemon has for its TUN anyway) and fall back
 * to the capped option. Returns what the kernel actually granted (it doubles
 * the request for bookkeeping, see socket(7)).
 */
#include "meshd_native.h"

#include <errno.h>
#include <sys/socket.h>

static int set_buffer(int fd, int force_opt, int opt, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) == 0) return 0;
  if (setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes) == 0) return 0;
  return -errno;
}

static int get_buffer(int fd, int opt) {
  int value = 0;
  socklen_t len = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, opt, &value, &len) != 0) return -errno;
  return value;
}

napi_value meshd_set_socket_buffers(napi_env env, napi_callback_info info) {
  napi_value argv[3], result, rcv_value, snd_value;
  int fd;
  uint32_t rcv, snd;
  if (!meshd_get_args(env, info, 3, argv) || !meshd_get_fd(env, argv[0], &fd) ||
      !meshd_get_u32(env, argv[1], "rcvBytes", &rcv) || !meshd_get_u32(env, argv[2], "sndBytes", &snd)) {
    return NULL;
  }
  if (rcv > INT32_MAX / 2 || snd > INT32_MAX / 2) {
    meshd_throw_range(env, "socket buffer sizes must be below 1 GiB");
    return NULL;
  }
  int err = set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, (int)rcv);
  if (err == 0) err = set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, (int)snd);
  if (err != 0) {
    meshd_throw_errno(env, -err, "setsockopt", "cannot set socket buffers on fd %d", fd);
    return NULL;
  }
  MESHD_CALL(env, napi_create_object(env, &result));
  MESHD_CALL(env, napi_create_int32(env, get_buffer(fd, SO_RCVBUF), &rcv_value));
  MESHD_CALL(env, napi_create_int32(env, get_buffer(fd, SO_SNDBUF), &snd_value));
  MESHD_CALL(env, napi_set_named_property(env, result, "rcv", rcv_value));
  MESHD_CALL(env, napi_set_named_property(env, result, "snd", snd_value));
  return result;
}

napi_value meshd_set_socket_mark(napi_env env, napi_callback_info info) {
  napi_value argv[2], result;
  int fd;
  uint32_t mark, got = 0;
  socklen_t len = sizeof got;
  if (!meshd_get_args(env, info, 2, argv) || !meshd_get_fd(env, argv[0], &fd) || !meshd_get_u32(env, argv[1], "mark", &mark)) {
    return NULL;
  }
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0 || getsockopt(fd, SOL_SOCKET, SO_MARK, &got, &len) != 0) {
    meshd_throw_errno(env, errno, "setsockopt", "cannot set SO_MARK on fd %d", fd);
    return NULL;
  }
  MESHD_CALL(env, napi_create_uint32(env, got, &result));
  return result;
}
