/*
 * The datapath's threads and sockets. Two threads, one per direction, as the box has two
 * cores and each direction is one pipeline:
 *
 *   TX: poll(TUN) -> read up to DP_TX_READS packets (with IFF_VNET_HDR a read may be a 64 KiB
 *       TCP super-packet, split here into MTU-sized segments) -> route by destination
 *       (allowed IPs) -> flow cache -> seal under the peer's current session -> sendmmsg, with
 *       runs of equal-sized messages to one endpoint sent as one UDP GSO super-datagram.
 *   RX: poll(UDP v4, v6) -> recvmmsg (with UDP_GRO one buffer holds many datagrams) -> per
 *       datagram dp_rx_datagram() -> the accepted packets written to the TUN, TCP segments of
 *       one flow coalesced into one GSO write (offload.c).
 *
 * Packets that need JS (no session yet, a filter verdict, handshakes) leave as events.
 */
#include "datapath.h"
#include "flowcache.h"
#include "offload.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define DP_TX_SLOTS 256u
#define DP_TX_READS 32u
/* A super-packet of 64 KiB at the smallest MSS the kernel allows (IPv4 536 - 40 headers). */
#define DP_TX_SEGS_PER_READ 136u
/* Largest inner packet a slot takes (jumbo frames); bigger ones are counted and dropped. */
#define DP_SLOT_PACKET 9216u
#define DP_SLOT_STRIDE (DP_HEADER_LEN + DP_SLOT_PACKET + 16u + DP_TAG_LEN + 16u)
#define DP_RAW_LEN (sizeof(struct virtio_net_hdr) + 65535u + 1u)
/* UDP GSO: at most 64 segments (UDP_MAX_SEGMENTS) and one IP datagram's worth of bytes. */
#define DP_GSO_MAX_SEGS 64u
#define DP_GSO_MAX_BYTES 65000u

#define DP_RX_MSGS 16u
#define DP_RX_BUF 65536u
#define DP_RX_DELIVER_MAX 512u

static const int SOCKET_BUFFER = 4 << 20;

/* ---------- sockets ---------- */

static int open_socket(int family, uint16_t port, uint16_t *bound) {
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  /* Past net.core.rmem_max with CAP_NET_ADMIN: the default 208 KiB is where wireguard-go drops. */
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &SOCKET_BUFFER, sizeof SOCKET_BUFFER) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &SOCKET_BUFFER, sizeof SOCKET_BUFFER);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &SOCKET_BUFFER, sizeof SOCKET_BUFFER) != 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &SOCKET_BUFFER, sizeof SOCKET_BUFFER);
  union {
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
  } a;
  memset(&a, 0, sizeof a);
  socklen_t len;
  if (family == AF_INET) {
    a.v4.sin_family = AF_INET;
    a.v4.sin_port = htons(port);
    len = sizeof a.v4;
  } else {
    a.v6.sin6_family = AF_INET6;
    a.v6.sin6_port = htons(port);
    len = sizeof a.v6;
  }
  if (bind(fd, (struct sockaddr *)&a, len) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  *bound = ntohs(family == AF_INET ? a.v4.sin_port : a.v6.sin6_port);
  return fd;
}

int dp_open_sockets(dp *d, uint16_t port) {
  uint16_t bound = 0, bound6 = 0;
  int v4 = open_socket(AF_INET, port, &bound);
  if (v4 < 0) return v4;
  int v6 = open_socket(AF_INET6, bound, &bound6);
  if (v6 < 0 && v6 != -EAFNOSUPPORT && v6 != -EADDRNOTAVAIL) {
    close(v4);
    return v6;
  }
  d->udp4 = v4;
  d->udp6 = v6 < 0 ? -1 : v6;
  d->port = bound;
  /* UDP GRO on receive, GSO on send (Linux 5.0 / 4.18); both optional. */
  int one = 1, zero = 0;
  d->gro = setsockopt(v4, IPPROTO_UDP, UDP_GRO, &one, sizeof one) == 0;
  if (d->udp6 >= 0 && d->gro) d->gro = setsockopt(d->udp6, IPPROTO_UDP, UDP_GRO, &one, sizeof one) == 0;
  d->gso = setsockopt(v4, IPPROTO_UDP, UDP_SEGMENT, &zero, sizeof zero) == 0;
  return 0;
}

void dp_close_sockets(dp *d) {
  if (d->udp4 >= 0) close(d->udp4);
  if (d->udp6 >= 0) close(d->udp6);
  d->udp4 = d->udp6 = -1;
}

int dp_set_mark(dp *d, uint32_t mark) {
  int fds[2] = {d->udp4, d->udp6};
  for (int i = 0; i < 2; i++)
    if (fds[i] >= 0 && setsockopt(fds[i], SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) return -errno;
  return 0;
}

static int socket_for(const dp *d, const dp_endpoint *ep) { return ep->addr.sa.sa_family == AF_INET6 ? d->udp6 : d->udp4; }

/* Waits for room in a full socket buffer (backpressure reaches the TUN, so TCP slows). */
static bool wait_writable(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLOUT};
  return poll(&p, 1, 100) == 1;
}

int dp_send_raw(dp *d, const uint8_t *data, size_t len, const dp_endpoint *ep) {
  int fd = socket_for(d, ep);
  if (fd < 0) return -EAFNOSUPPORT;
  for (int tries = 0; tries < 3; tries++) {
    if (sendto(fd, data, len, 0, &ep->addr.sa, ep->len) >= 0) return 0;
    if (errno != EAGAIN || !wait_writable(fd)) break;
  }
  dp_drop(d, DP_DROP_udpSendFailed);
  return -errno;
}

/* A hint remembers slots of one flow cache: when JS replaced the cache, forget them (read lock held). */
static void reset_hint(meshd_flowcache_hint *hint, uint64_t *gen, const dp *d) {
  if (*gen == d->flows_gen) return;
  meshd_flowcache_hint_init(hint);
  *gen = d->flows_gen;
}

/* ---------- TUN writes ---------- */

/* One plain packet to the TUN; `pkt` has at least a virtio_net_hdr of headroom. */
static void tun_write_plain(dp *d, uint8_t *pkt, size_t len) {
  ssize_t n;
  if (d->vnet_hdr) {
    uint8_t *h = pkt - MESHD_VNET_HDR_LEN;
    memset(h, 0, MESHD_VNET_HDR_LEN); /* a plain packet: no GSO, no checksum offload */
    n = write(d->tun_fd, h, len + MESHD_VNET_HDR_LEN);
  } else {
    n = write(d->tun_fd, pkt, len);
  }
  atomic_fetch_add_explicit(&d->tun_writes, 1, memory_order_relaxed);
  if (n < 0) dp_drop(d, DP_DROP_tunWriteFailed);
}

int dp_tun_write_copy(dp *d, const uint8_t *pkt, size_t len) {
  uint8_t *buf = malloc(len + DP_HEADER_LEN);
  if (buf == NULL) return -ENOMEM;
  memcpy(buf + DP_HEADER_LEN, pkt, len);
  tun_write_plain(d, buf + DP_HEADER_LEN, len);
  free(buf);
  return 0;
}

typedef struct rx_state {
  dp *d;
  EVP_CIPHER_CTX *ctx;
  meshd_flowcache_hint hint;
  uint64_t hint_gen; /* the flow cache the hint belongs to (dp.flows_gen) */
  uint8_t *bufs;
  struct mmsghdr mm[DP_RX_MSGS];
  struct iovec iov[DP_RX_MSGS];
  struct sockaddr_in6 names[DP_RX_MSGS];
  char cmsg[DP_RX_MSGS][CMSG_SPACE(sizeof(int))];
  meshd_pkt out[DP_RX_DELIVER_MAX];
  uint32_t nout;
  meshd_gro gro;
  struct iovec wiov[MESHD_GRO_BATCH_MAX];
  meshd_offload_write writes[MESHD_GRO_BATCH_MAX];
} rx_state;

static void rx_flush(rx_state *s) {
  dp *d = s->d;
  if (s->nout == 0) return;
  if (!d->vnet_hdr) {
    for (uint32_t i = 0; i < s->nout; i++) tun_write_plain(d, s->out[i].data, s->out[i].len);
    s->nout = 0;
    return;
  }
  /* TCP segments of one flow go to the kernel as one GSO packet: one write, one trip up the stack. */
  for (uint32_t done = 0; done < s->nout;) {
    uint32_t n = s->nout - done < MESHD_GRO_BATCH_MAX ? s->nout - done : MESHD_GRO_BATCH_MAX;
    int nw = meshd_offload_coalesce(&s->gro, s->out + done, n, s->wiov, MESHD_GRO_BATCH_MAX, s->writes, MESHD_GRO_BATCH_MAX);
    if (nw < 0) {
      for (uint32_t i = 0; i < n; i++) dp_drop(d, DP_DROP_offloadError);
    }
    for (int w = 0; w < nw; w++) {
      const meshd_offload_write *wr = &s->writes[w];
      ssize_t r = writev(d->tun_fd, s->wiov + wr->iov_first, (int)wr->iov_count);
      atomic_fetch_add_explicit(&d->tun_writes, 1, memory_order_relaxed);
      if (wr->pkt_count > 1) atomic_fetch_add_explicit(&d->coalesced, wr->pkt_count, memory_order_relaxed);
      if (r < 0) dp_drop(d, DP_DROP_tunWriteFailed);
    }
    done += n;
  }
  s->nout = 0;
}

static void to_endpoint(const struct sockaddr_in6 *name, socklen_t len, dp_endpoint *ep) {
  memset(ep, 0, sizeof *ep);
  if (len > sizeof ep->addr) len = 0;
  memcpy(&ep->addr, name, len);
  ep->len = len;
}

static int rx_socket(rx_state *s, int fd) {
  dp *d = s->d;
  for (uint32_t i = 0; i < DP_RX_MSGS; i++) {
    s->iov[i].iov_base = s->bufs + (size_t)i * DP_RX_BUF;
    s->iov[i].iov_len = DP_RX_BUF;
    struct msghdr *m = &s->mm[i].msg_hdr;
    m->msg_name = &s->names[i];
    m->msg_namelen = sizeof s->names[i];
    m->msg_iov = &s->iov[i];
    m->msg_iovlen = 1;
    m->msg_control = s->cmsg[i];
    m->msg_controllen = sizeof s->cmsg[i];
    m->msg_flags = 0;
  }
  int n = recvmmsg(fd, s->mm, DP_RX_MSGS, MSG_DONTWAIT, NULL);
  if (n <= 0) return n < 0 && errno != EAGAIN && errno != EINTR ? -errno : 0;
  atomic_fetch_add_explicit(&d->rx_syscalls, 1, memory_order_relaxed);
  pthread_rwlock_rdlock(&d->lock);
  reset_hint(&s->hint, &s->hint_gen, d);
  uint64_t now = dp_now_ms();
  for (int i = 0; i < n; i++) {
    struct msghdr *m = &s->mm[i].msg_hdr;
    size_t len = s->mm[i].msg_len, seg = len;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
      if (c->cmsg_level == IPPROTO_UDP && c->cmsg_type == UDP_GRO) {
        int g;
        memcpy(&g, CMSG_DATA(c), sizeof g);
        if (g > 0) seg = (size_t)g;
      }
    }
    dp_endpoint from;
    to_endpoint(&s->names[i], m->msg_namelen, &from);
    uint8_t *base = s->iov[i].iov_base;
    for (size_t off = 0; off < len; off += seg) {
      size_t l = len - off < seg ? len - off : seg;
      dp_rx_result r;
      if (seg != len) atomic_fetch_add_explicit(&d->gro_segments, 1, memory_order_relaxed);
      dp_rx_datagram(d, s->ctx, &s->hint, base + off, l, &from, now, &r);
      if (r.action != DP_RX_DELIVER) continue;
      s->out[s->nout].data = r.data;
      s->out[s->nout].len = (uint32_t)r.len;
      if (++s->nout == DP_RX_DELIVER_MAX) {
        pthread_rwlock_unlock(&d->lock);
        rx_flush(s);
        pthread_rwlock_rdlock(&d->lock);
      }
    }
  }
  pthread_rwlock_unlock(&d->lock);
  rx_flush(s);
  return n;
}

static void *rx_main(void *arg) {
  dp *d = arg;
  rx_state *s = calloc(1, sizeof *s);
  if (s == NULL || (s->bufs = malloc((size_t)DP_RX_MSGS * DP_RX_BUF)) == NULL || (s->ctx = EVP_CIPHER_CTX_new()) == NULL) {
    dp_post(d, DP_EV_FATAL, UINT32_MAX, ENOMEM, NULL, (const uint8_t *)"rx", 2);
    goto out;
  }
  s->d = d;
  meshd_flowcache_hint_init(&s->hint);
  struct pollfd p[3] = {{.fd = d->stop_fd, .events = POLLIN}, {.fd = d->udp4, .events = POLLIN}, {.fd = d->udp6, .events = POLLIN}};
  for (;;) {
    if (poll(p, d->udp6 >= 0 ? 3 : 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[0].revents) break;
    for (int k = 1; k < 3; k++) {
      if (k == 2 && d->udp6 < 0) continue;
      if (!(p[k].revents & POLLIN)) continue;
      /* Drain a bounded number of batches, then look at the other socket and stop_fd again. */
      for (int b = 0; b < 8; b++)
        if (rx_socket(s, p[k].fd) < (int)DP_RX_MSGS) break;
    }
  }
out:
  if (s) {
    if (s->ctx) EVP_CIPHER_CTX_free(s->ctx);
    if (s->bufs) {
      dp_wipe(s->bufs, (size_t)DP_RX_MSGS * DP_RX_BUF);
      free(s->bufs);
    }
    free(s);
  }
  return NULL;
}

/* ---------- TX ---------- */

typedef struct tx_state {
  dp *d;
  int fd; /* this thread's TUN queue */
  EVP_CIPHER_CTX *ctx;
  meshd_flowcache_hint hint;
  uint64_t hint_gen;
  uint8_t *raw;
  uint8_t *slots;
  uint32_t lens[DP_TX_SLOTS];
  dp_peer *peer[DP_TX_SLOTS];
  dp_endpoint ep[DP_TX_SLOTS];
  struct mmsghdr mm[DP_TX_SLOTS];
  struct iovec iov[DP_TX_SLOTS];
  char cmsg[DP_TX_SLOTS][CMSG_SPACE(sizeof(uint16_t))];
} tx_state;

static inline uint8_t *slot(tx_state *s, uint32_t i) { return s->slots + (size_t)i * DP_SLOT_STRIDE; }

/* Reads from the TUN into slots[first..]; returns how many packets, or -errno on a fatal error. */
static int tx_read(tx_state *s, uint32_t first) {
  dp *d = s->d;
  uint32_t n = first;
  for (uint32_t r = 0; r < DP_TX_READS && n + DP_TX_SEGS_PER_READ <= DP_TX_SLOTS; r++) {
    ssize_t got;
    if (!d->vnet_hdr) {
      got = read(s->fd, slot(s, n) + DP_HEADER_LEN, DP_SLOT_PACKET + 1);
      if (got < 0) goto error;
      atomic_fetch_add_explicit(&d->tun_reads, 1, memory_order_relaxed);
      if ((size_t)got > DP_SLOT_PACKET) {
        dp_drop(d, DP_DROP_offloadError);
        continue;
      }
      s->lens[n++] = (uint16_t)got;
      continue;
    }
    got = read(s->fd, s->raw, DP_RAW_LEN);
    if (got < 0) goto error;
    atomic_fetch_add_explicit(&d->tun_reads, 1, memory_order_relaxed);
    if ((size_t)got < sizeof(struct virtio_net_hdr) || (size_t)got >= DP_RAW_LEN) {
      dp_drop(d, DP_DROP_offloadError);
      continue;
    }
    const struct virtio_net_hdr *h = (const struct virtio_net_hdr *)s->raw;
    /* Segments land at their slots' plaintext offset, ready to be sealed in place. A segment
     * may run up to a stride long (the slack after the last slot takes that); longer than a
     * slot's packet room, it is dropped here. */
    int segs = meshd_offload_split(h, s->raw + sizeof *h, (size_t)got - sizeof *h, slot(s, n) + DP_HEADER_LEN, DP_SLOT_STRIDE,
                                   DP_TX_SLOTS - n, s->lens + n);
    if (segs < 0) {
      dp_drop(d, DP_DROP_offloadError);
      continue;
    }
    for (int k = 0; k < segs; k++) {
      if (s->lens[n] > DP_SLOT_PACKET) {
        dp_drop(d, DP_DROP_offloadError);
        s->lens[n] = 0;
      }
      n++;
    }
  }
  return (int)(n - first);
error:
  if (errno == EAGAIN || errno == EINTR) return (int)(n - first);
  return -errno;
}

/* Routes and seals packet i in place; false when it does not go out from here. */
static bool tx_seal(tx_state *s, uint32_t i, uint64_t now) {
  dp *d = s->d;
  uint8_t *msg = slot(s, i), *pkt = msg + DP_HEADER_LEN;
  size_t len = s->lens[i];
  if (len == 0) return false; /* dropped at read */
  int fam = len >= 20 ? pkt[0] >> 4 : 0;
  if ((fam != 4 && fam != 6) || (fam == 6 && len < 40)) {
    dp_drop(d, DP_DROP_invalidInnerPacket);
    return false;
  }
  dp_peer *peer = dp_peer_get(d, dp_allowedips_lookup(d->aips, fam, pkt + (fam == 6 ? 24 : 16)));
  if (peer == NULL) {
    dp_drop(d, DP_DROP_noRoute);
    return false;
  }
  /* The flow is ours from here on: replies to it pass the filter. JS's table learns it once. */
  if (d->flows && meshd_flowcache_outbound(d->flows, &s->hint, pkt, len, now) == MESHD_FC_OUT_NEW)
    dp_post(d, DP_EV_FLOW, peer->id, 0, NULL, pkt, len);
  if (i == 0 || s->peer[i - 1] != peer) dp_peer_endpoint(peer, &s->ep[i]);
  else s->ep[i] = s->ep[i - 1];
  if (s->ep[i].len == 0) {
    dp_drop(d, DP_DROP_noEndpoint);
    return false;
  }
  dp_keypair *kp = dp_sending_keypair(peer, now);
  if (kp == NULL) {
    /* JS stages it and starts a handshake (send.ts). */
    dp_post(d, DP_EV_STAGE, peer->id, 0, NULL, pkt, len);
    return false;
  }
  uint64_t counter = atomic_fetch_add_explicit(&kp->send_counter, 1, memory_order_relaxed);
  if (counter >= DP_REJECT_AFTER_MESSAGES) {
    dp_drop(d, DP_DROP_counterExhausted);
    return false;
  }
  size_t m = dp_seal(s->ctx, kp, counter, msg, len, d->mtu);
  if (m == 0) {
    dp_drop(d, DP_DROP_udpSendFailed);
    return false;
  }
  s->lens[i] = (uint16_t)m;
  s->peer[i] = peer;
  atomic_fetch_add_explicit(&peer->tx_bytes, m, memory_order_relaxed);
  atomic_fetch_add_explicit(&peer->tx_packets, 1, memory_order_relaxed);
  atomic_store_explicit(&peer->t_data_sent, now, memory_order_relaxed);
  atomic_store_explicit(&peer->t_auth_sent, now, memory_order_relaxed);
  return true;
}

static bool same_ep(const dp_endpoint *a, const dp_endpoint *b) { return a->len == b->len && memcmp(&a->addr, &b->addr, a->len) == 0; }

/* Sends mm[0..count) on fd, waiting out a full buffer a little; GSO refused: off for good. */
static void tx_sendmmsg(tx_state *s, int fd, struct mmsghdr *mm, uint32_t count) {
  dp *d = s->d;
  uint32_t sent = 0;
  int stalls = 0;
  while (sent < count) {
    int n = sendmmsg(fd, mm + sent, count - sent, 0);
    atomic_fetch_add_explicit(&d->tx_syscalls, 1, memory_order_relaxed);
    if (n > 0) {
      sent += (uint32_t)n;
      continue;
    }
    if (n < 0 && errno == EAGAIN && stalls++ < 10 && wait_writable(fd)) continue;
    if (n < 0 && (errno == EIO || errno == EINVAL) && mm[sent].msg_hdr.msg_controllen) {
      /* A path that refuses UDP GSO: send this one's segments singly, and never GSO again. */
      d->gso = false;
      struct msghdr *h = &mm[sent].msg_hdr;
      for (size_t k = 0; k < h->msg_iovlen; k++)
        if (sendto(fd, h->msg_iov[k].iov_base, h->msg_iov[k].iov_len, 0, h->msg_name, h->msg_namelen) < 0)
          dp_drop(d, DP_DROP_udpSendFailed);
      sent++;
      continue;
    }
    /* Unreachable and the like: this message is lost, the rest still go. */
    struct msghdr *h = &mm[sent].msg_hdr;
    for (size_t k = 0; k < h->msg_iovlen; k++) dp_drop(d, DP_DROP_udpSendFailed);
    sent++;
  }
}

static void tx_send(tx_state *s, const bool *ok, uint32_t n) {
  dp *d = s->d;
  uint32_t nm = 0, fd_run = 0;
  int run_fd = -1;
  for (uint32_t i = 0; i < n;) {
    if (!ok[i]) {
      i++;
      continue;
    }
    int fd = socket_for(d, &s->ep[i]);
    if (fd < 0) {
      dp_drop(d, DP_DROP_udpSendFailed);
      i++;
      continue;
    }
    if (fd != run_fd && nm > fd_run) {
      tx_sendmmsg(s, run_fd, s->mm + fd_run, nm - fd_run);
      fd_run = nm;
    }
    run_fd = fd;
    /* A GSO run: same endpoint, equal sizes; the last may be shorter. */
    uint32_t j = i, segs = 0;
    size_t bytes = 0, size = s->lens[i];
    struct iovec *iov = &s->iov[i];
    while (j < n && segs < (d->gso ? DP_GSO_MAX_SEGS : 1u)) {
      if (!ok[j]) {
        j++;
        continue;
      }
      if (!same_ep(&s->ep[j], &s->ep[i]) || s->lens[j] > size || bytes + s->lens[j] > DP_GSO_MAX_BYTES) break;
      s->iov[i + segs].iov_base = slot(s, j);
      s->iov[i + segs].iov_len = s->lens[j];
      bytes += s->lens[j];
      segs++;
      bool shorter = s->lens[j] < size;
      j++;
      if (shorter) break;
    }
    struct msghdr *m = &s->mm[nm].msg_hdr;
    memset(m, 0, sizeof *m);
    m->msg_name = &s->ep[i].addr;
    m->msg_namelen = s->ep[i].len;
    m->msg_iov = iov;
    m->msg_iovlen = segs;
    if (segs > 1) {
      m->msg_control = s->cmsg[nm];
      m->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
      struct cmsghdr *c = CMSG_FIRSTHDR(m);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t gso = (uint16_t)size;
      memcpy(CMSG_DATA(c), &gso, sizeof gso);
      atomic_fetch_add_explicit(&d->gso_sends, 1, memory_order_relaxed);
    }
    nm++;
    i = j;
  }
  if (nm > fd_run) tx_sendmmsg(s, run_fd, s->mm + fd_run, nm - fd_run);
}

typedef struct tx_arg {
  dp *d;
  int fd;
} tx_arg;

static void *tx_main(void *arg) {
  tx_arg a = *(tx_arg *)arg;
  free(arg);
  dp *d = a.d;
  tx_state *s = calloc(1, sizeof *s);
  bool *ok = calloc(DP_TX_SLOTS, sizeof *ok);
  if (s == NULL || ok == NULL || (s->raw = malloc(DP_RAW_LEN)) == NULL ||
      (s->slots = malloc((size_t)(DP_TX_SLOTS + 1) * DP_SLOT_STRIDE)) == NULL || (s->ctx = EVP_CIPHER_CTX_new()) == NULL) {
    dp_post(d, DP_EV_FATAL, UINT32_MAX, ENOMEM, NULL, (const uint8_t *)"tx", 2);
    goto out;
  }
  s->d = d;
  s->fd = a.fd;
  meshd_flowcache_hint_init(&s->hint);
  struct pollfd p[2] = {{.fd = d->stop_fd, .events = POLLIN}, {.fd = a.fd, .events = POLLIN}};
  for (;;) {
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[0].revents) break;
    if (p[1].revents & (POLLERR | POLLHUP | POLLNVAL)) {
      dp_post(d, DP_EV_FATAL, UINT32_MAX, EBADFD, NULL, (const uint8_t *)"tun", 3);
      break;
    }
    int n = tx_read(s, 0);
    if (n < 0) {
      dp_drop(d, DP_DROP_tunReadError);
      dp_post(d, DP_EV_FATAL, UINT32_MAX, (uint32_t)-n, NULL, (const uint8_t *)"tun", 3);
      break;
    }
    if (n == 0) continue;
    pthread_rwlock_rdlock(&d->lock);
    reset_hint(&s->hint, &s->hint_gen, d);
    uint64_t now = dp_now_ms();
    for (uint32_t i = 0; i < (uint32_t)n; i++) {
      s->peer[i] = NULL;
      ok[i] = tx_seal(s, i, now);
    }
    /* Sending needs no table: the endpoints were copied, the messages are sealed. */
    pthread_rwlock_unlock(&d->lock);
    tx_send(s, ok, (uint32_t)n);
  }
out:
  if (s) {
    if (s->ctx) EVP_CIPHER_CTX_free(s->ctx);
    if (s->slots) {
      dp_wipe(s->slots, (size_t)(DP_TX_SLOTS + 1) * DP_SLOT_STRIDE);
      free(s->slots);
    }
    free(s->raw);
    free(s);
  }
  free(ok);
  return NULL;
}

/* JS-thread sends (staged packets, keepalives): few, so one sendto each. Returns how many
 * went out; the rest need a session. Read lock held by the caller. */
int dp_send_plaintexts(dp *d, EVP_CIPHER_CTX *ctx, dp_peer *peer, uint8_t *const *pkts, const size_t *lens, int n) {
  uint64_t now = dp_now_ms();
  dp_endpoint ep;
  dp_peer_endpoint(peer, &ep);
  if (ep.len == 0) return 0;
  uint8_t *msg = malloc(DP_SLOT_STRIDE);
  if (msg == NULL) return 0;
  int sent = 0;
  for (; sent < n; sent++) {
    dp_keypair *kp = dp_sending_keypair(peer, now);
    if (kp == NULL || lens[sent] > DP_SLOT_PACKET) break;
    uint64_t counter = atomic_fetch_add(&kp->send_counter, 1);
    memcpy(msg + DP_HEADER_LEN, pkts[sent], lens[sent]);
    size_t m = dp_seal(ctx, kp, counter, msg, lens[sent], d->mtu);
    if (m == 0) break;
    dp_send_raw(d, msg, m, &ep);
    atomic_fetch_add(&peer->tx_bytes, m);
    atomic_fetch_add(&peer->tx_packets, 1);
    atomic_store(&peer->t_auth_sent, now);
    if (lens[sent]) atomic_store(&peer->t_data_sent, now);
  }
  dp_wipe(msg, DP_SLOT_STRIDE);
  free(msg);
  return sent;
}

static void wake_stop(dp *d) {
  uint64_t one = 1;
  if (write(d->stop_fd, &one, sizeof one) < 0) {
    /* an eventfd write cannot fail here */
  }
}

int dp_start(dp *d) {
  if (d->running) return 0;
  d->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (d->stop_fd < 0) return -errno;
  if (d->nqueues == 0) {
    d->tun_queues[0] = d->tun_fd;
    d->nqueues = 1;
  }
  int err = pthread_create(&d->rx_thread, NULL, rx_main, d);
  bool rx_up = err == 0;
  uint32_t started = 0;
  for (; err == 0 && started < d->nqueues; started++) {
    tx_arg *a = malloc(sizeof *a);
    if (a == NULL) {
      err = ENOMEM;
      break;
    }
    a->d = d;
    a->fd = d->tun_queues[started];
    err = pthread_create(&d->tx_threads[started], NULL, tx_main, a);
    if (err) {
      free(a);
      break;
    }
  }
  if (err) {
    wake_stop(d);
    for (uint32_t k = 0; k < started; k++) pthread_join(d->tx_threads[k], NULL);
    if (rx_up) pthread_join(d->rx_thread, NULL);
    close(d->stop_fd);
    d->stop_fd = -1;
    return -err;
  }
  d->running = true;
  return 0;
}

void dp_stop(dp *d) {
  if (!d->running) return;
  wake_stop(d);
  for (uint32_t k = 0; k < d->nqueues; k++) pthread_join(d->tx_threads[k], NULL);
  pthread_join(d->rx_thread, NULL);
  close(d->stop_fd);
  d->stop_fd = -1;
  d->running = false;
}
