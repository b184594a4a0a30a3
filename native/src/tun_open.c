/*
 * Opening and closing TUN devices (Documentation/networking/tuntap.rst, "How does the
 * driver work?"): open /dev/net/tun, then TUNSETIFF binds the file to an interface,
 * creating it if no interface of that name exists. The interface is not persistent: it
 * disappears when its last queue's file is closed.
 *
 * open(name: string, multiQueue: boolean, vnetHdr: boolean) -> { fd: number, name: string }
 *   Flags: IFF_TUN | IFF_NO_PI, plus IFF_MULTI_QUEUE / IFF_VNET_HDR when asked. The fd is
 *   O_NONBLOCK and close-on-exec. `name` is what the kernel chose (a "%d" template is filled).
 * close(fd) -> undefined
 *   Stops the fd's reader, if any, then closes it. fds from open() must be closed here, not
 *   by other means: the addon closes any still open when its environment is torn down
 *   (a worker exiting), and would otherwise close a reused number.
 */
#include "meshd_native.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define TUN_CLONE_DEVICE "/dev/net/tun"
#define NEEDS_CAP "needs CAP_NET_ADMIN; run as root or grant the capability"

/* The kernel's dev_valid_name(): 1..15 bytes, not "." or "..", no '/', ':' or whitespace.
 * Returns NULL when valid, else what is wrong. */
static const char *name_problem(const char *name, size_t len) {
  if (len == 0) return "it is empty";
  if (len > MESHD_IFNAME_MAX) return "it is longer than 15 bytes (the kernel's IFNAMSIZ - 1)";
  if (strlen(name) != len) return "it contains a NUL character";
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return "'.' and '..' are reserved";
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c == '/' || c == ':' || isspace(c)) return "it contains '/', ':' or whitespace";
  }
  return NULL;
}

static void throw_open_failure(napi_env env, int err) {
  switch (err) {
  case EPERM:
  case EACCES:
    meshd_throw_errno(env, err, "open",
                      "cannot open " TUN_CLONE_DEVICE ": permission denied (" NEEDS_CAP ")");
    break;
  case ENOENT:
    meshd_throw_errno(env, err, "open",
                      TUN_CLONE_DEVICE " not found (load the tun kernel module: modprobe tun)");
    break;
  case ENXIO:
  case ENODEV:
    meshd_throw_errno(env, err, "open",
                      TUN_CLONE_DEVICE " has no driver (load the tun kernel module: modprobe tun)");
    break;
  case EMFILE:
  case ENFILE:
    meshd_throw_errno(env, err, "open",
                      "cannot open " TUN_CLONE_DEVICE ": too many open files (raise the limit: ulimit -n)");
    break;
  default:
    meshd_throw_errno(env, err, "open", "cannot open " TUN_CLONE_DEVICE ": %s", strerror(err));
  }
}

static void throw_setiff_failure(napi_env env, int err, const char *name, bool multi_queue) {
  switch (err) {
  case EPERM:
  case EACCES:
    meshd_throw_errno(env, err, "ioctl",
                      "cannot create TUN interface \"%s\": permission denied (" NEEDS_CAP ")", name);
    break;
  case EBUSY:
    meshd_throw_errno(env, err, "ioctl",
                      "TUN interface \"%s\" is already in use: a single-queue TUN takes one file "
                      "descriptor (close the other user, pick another name, or open every queue "
                      "with multiQueue)",
                      name);
    break;
  case EINVAL:
    meshd_throw_errno(env, err, "ioctl",
                      "cannot attach to interface \"%s\": it exists but is not a %s TUN device "
                      "(another device type, or it was created %s multiQueue)",
                      name, multi_queue ? "multi-queue" : "single-queue",
                      multi_queue ? "without" : "with");
    break;
  case E2BIG:
    meshd_throw_errno(env, err, "ioctl",
                      "TUN interface \"%s\" already has the maximum number of queues", name);
    break;
  default:
    meshd_throw_errno(env, err, "ioctl", "cannot create TUN interface \"%s\": %s", name,
                      strerror(err));
  }
}

napi_value meshd_tun_open(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!meshd_get_args(env, info, 3, argv)) return NULL;

  napi_valuetype type;
  MESHD_CALL(env, napi_typeof(env, argv[0], &type));
  if (type != napi_string) {
    meshd_throw_type(env, "TUN interface name must be a string");
    return NULL;
  }
  size_t len = 0;
  MESHD_CALL(env, napi_get_value_string_utf8(env, argv[0], NULL, 0, &len));
  char name[64]; /* longer names are shown shortened in the error */
  MESHD_CALL(env, napi_get_value_string_utf8(env, argv[0], name, sizeof name, NULL));
  const char *problem = name_problem(name, len);
  if (problem != NULL) {
    meshd_throw_errno(env, EINVAL, NULL, "invalid TUN interface name \"%s%s\": %s", name,
                      len >= sizeof name ? "..." : "", problem);
    return NULL;
  }
  bool multi_queue = false, vnet_hdr = false;
  if (!meshd_get_bool(env, argv[1], "multiQueue", &multi_queue)) return NULL;
  if (!meshd_get_bool(env, argv[2], "vnetHdr", &vnet_hdr)) return NULL;

  int fd = open(TUN_CLONE_DEVICE, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    throw_open_failure(env, errno);
    return NULL;
  }

  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  if (multi_queue) ifr.ifr_flags |= IFF_MULTI_QUEUE;
  /* Each read/write then starts with a struct virtio_net_hdr; offloads are negotiated below. */
  if (vnet_hdr) ifr.ifr_flags |= IFF_VNET_HDR;
  memcpy(ifr.ifr_name, name, len); /* len <= IFNAMSIZ - 1; memset left the NUL */
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    throw_setiff_failure(env, err, name, multi_queue);
    return NULL;
  }
  if (vnet_hdr) {
    /* The kernel may now hand us TCP super-packets of up to 64 KiB with partial checksums
     * (TSO), which the native datapath splits and checksums (offload.c), and takes GSO
     * packets we coalesce on the way in. UDP segmentation offload (TUN_F_USO) is left off. */
    int hdr_size = sizeof(struct virtio_net_hdr);
    unsigned offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_size) < 0 || ioctl(fd, TUNSETOFFLOAD, offloads) < 0) {
      int err = errno;
      close(fd);
      meshd_throw_errno(env, err, "ioctl", "cannot enable TUN offloads on %s", name);
      return NULL;
    }
  }

  meshd_state *state = meshd_state_of(env);
  if (state == NULL || !meshd_state_add_fd(state, fd)) {
    close(fd);
    meshd_throw_errno(env, ENOMEM, NULL, "out of memory tracking TUN fd");
    return NULL;
  }
  napi_value result, js_fd, js_name;
  if (napi_create_object(env, &result) != napi_ok || napi_create_int32(env, fd, &js_fd) != napi_ok ||
      napi_create_string_utf8(env, ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ), &js_name) !=
          napi_ok ||
      napi_set_named_property(env, result, "fd", js_fd) != napi_ok ||
      napi_set_named_property(env, result, "name", js_name) != napi_ok) {
    meshd_state_remove_fd(state, fd);
    close(fd);
    meshd_throw_napi_failure(env, "building the open() result");
    return NULL;
  }
  return result;
}

napi_value meshd_tun_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!meshd_get_args(env, info, 1, argv) || !meshd_get_fd(env, argv[0], &fd)) return NULL;
  /* The poll watcher must be gone before the fd number can be reused. */
  meshd_state *state = meshd_state_of(env);
  if (state != NULL) {
    meshd_reader_stop_fd(state, fd);
    meshd_state_remove_fd(state, fd);
  }
  /* Linux releases the fd even when close() reports EINTR, so only EBADF is an error. */
  if (close(fd) < 0 && errno == EBADF) {
    meshd_throw_errno(env, EBADF, "close", "cannot close fd %d: it is not open", fd);
  }
  return NULL;
}
