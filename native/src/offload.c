/*
 * offload.c: TUN offload handling (see offload.h for the contract and kernel references).
 */
#include "offload.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define IPPROTO_TCP_ 6
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_URG 0x20
#define TCP_ECE 0x40
#define TCP_CWR 0x80
#define TCP_CHECK_OFF 16 /* offsetof(struct tcphdr, check) */
#define IPV4_DF 0x4000
#define IPV4_FRAG_MASK 0x3fff /* MF + fragment offset */

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t rd32(const uint8_t *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void wr16(uint8_t *p, uint16_t v)
{
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void wr32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* ---- checksum ---- */

/* The one's complement sum does not depend on byte order (RFC 1071 2(B)): sum native-order
 * words and swap once at the end. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static inline uint16_t native_to_be_value(uint16_t v) { return __builtin_bswap16(v); }
#else
static inline uint16_t native_to_be_value(uint16_t v) { return v; }
#endif

static inline uint64_t load64(const uint8_t *p)
{
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

uint16_t meshd_csum_partial(const void *data, size_t len, uint16_t initial)
{
  const uint8_t *p = data;
  /* Each 8-byte word is added as two 32-bit halves, so the 64-bit accumulators cannot carry
   * out before 2^31 words (16 GiB): no carry handling in the loop. Four accumulators keep
   * the adds independent. */
  uint64_t a0 = native_to_be_value(initial), a1 = 0, a2 = 0, a3 = 0;
  while (len >= 32) {
    uint64_t w0 = load64(p), w1 = load64(p + 8), w2 = load64(p + 16), w3 = load64(p + 24);
    a0 += (w0 & 0xffffffffu) + (w0 >> 32);
    a1 += (w1 & 0xffffffffu) + (w1 >> 32);
    a2 += (w2 & 0xffffffffu) + (w2 >> 32);
    a3 += (w3 & 0xffffffffu) + (w3 >> 32);
    p += 32;
    len -= 32;
  }
  while (len >= 8) {
    uint64_t w = load64(p);
    a0 += (w & 0xffffffffu) + (w >> 32);
    p += 8;
    len -= 8;
  }
  if (len >= 4) {
    uint32_t w;
    memcpy(&w, p, 4);
    a1 += w;
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    a2 += w;
    p += 2;
    len -= 2;
  }
  if (len) {
    uint16_t w = 0;
    memcpy(&w, p, 1); /* the byte at the lower address, as in a 16-bit word padded with 0 */
    a3 += w;
  }
  /* Fold: 2^16 == 1 (mod 0xffff), so 32- and 64-bit native sums fold to the 16-bit one. */
  uint64_t s = (a0 & 0xffffffffu) + (a0 >> 32) + (a1 & 0xffffffffu) + (a1 >> 32) +
               (a2 & 0xffffffffu) + (a2 >> 32) + (a3 & 0xffffffffu) + (a3 >> 32);
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return native_to_be_value((uint16_t)s);
}

uint16_t meshd_csum_pseudo(const uint8_t *src, const uint8_t *dst, size_t addr_len,
                           uint8_t proto, uint32_t l4_len)
{
  uint16_t s = meshd_csum_partial(src, addr_len, 0);
  s = meshd_csum_partial(dst, addr_len, s);
  /* IPv4 carries a 16-bit length, IPv6 a 32-bit one: the sums agree for l4_len < 2^16. */
  s = meshd_csum_add(s, proto);
  s = meshd_csum_add(s, (uint16_t)(l4_len >> 16));
  return meshd_csum_add(s, (uint16_t)l4_len);
}

uint16_t meshd_csum_replace16(uint16_t check, uint16_t old_word, uint16_t new_word)
{
  uint16_t s = meshd_csum_add((uint16_t)~check, (uint16_t)~old_word);
  return (uint16_t)~meshd_csum_add(s, new_word);
}

/* ---- read side ---- */

static int check_flags(const struct virtio_net_hdr *hdr)
{
  unsigned flags = hdr->flags;
  if (flags & ~(unsigned)(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID))
    return -EINVAL;
  /* virtio_net_hdr_from_skb() sets one or the other, never both. */
  if ((flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && (flags & VIRTIO_NET_HDR_F_DATA_VALID))
    return -EINVAL;
  return 0;
}

/* GSO_NONE + NEEDS_CSUM: check csum_start/csum_offset against len (the kernel's
 * nh_min_len rule: the transport header starts after a minimal IP header). */
static int check_partial(const struct virtio_net_hdr *hdr, const uint8_t *pkt, size_t len)
{
  size_t start = hdr->csum_start, off = hdr->csum_offset;
  if (len < 1)
    return -EINVAL;
  size_t nh_min;
  switch (pkt[0] >> 4) {
  case 4: nh_min = 20; break;
  case 6: nh_min = 40; break;
  default: return -EINVAL;
  }
  /* An odd csum_offset would put the field across the 16-bit word grid the sum uses; no
   * protocol does that (TCP 16, UDP 6). */
  if (start < nh_min || (off & 1) || start + off + 2 > len)
    return -EINVAL;
  return 0;
}

static void complete_partial(uint8_t *pkt, size_t len, size_t start, size_t off)
{
  /* The field holds the pseudo-header sum, so summing over it includes that. 0 is sent as
   * 0xffff (RFC 768 for UDP; equivalent for TCP), as skb_checksum_help() does. */
  uint16_t c = (uint16_t)~meshd_csum_partial(pkt + start, len - start, 0);
  wr16(pkt + start + off, c ? c : 0xffff);
}

int meshd_offload_complete_csum(const struct virtio_net_hdr *hdr, uint8_t *pkt, size_t len)
{
  if (!hdr || (!pkt && len))
    return -EINVAL;
  int r = check_flags(hdr);
  if (r < 0)
    return r;
  if (hdr->gso_type != VIRTIO_NET_HDR_GSO_NONE) {
    unsigned base = hdr->gso_type & ~(unsigned)VIRTIO_NET_HDR_GSO_ECN;
    if ((base != VIRTIO_NET_HDR_GSO_TCPV4 && base != VIRTIO_NET_HDR_GSO_TCPV6) ||
        hdr->gso_size == 0)
      return -EINVAL;
    return MESHD_OFFLOAD_NEEDS_SPLIT;
  }
  if (hdr->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
    r = check_partial(hdr, pkt, len);
    if (r < 0)
      return r;
    complete_partial(pkt, len, hdr->csum_start, hdr->csum_offset);
  }
  return 0;
}

/* TCP GSO packet layout, parsed from the packet itself. */
struct gso_layout {
  size_t iph_len, tcph_len;
  bool v6;
};

static int parse_gso(const struct virtio_net_hdr *hdr, const uint8_t *pkt, size_t len,
                     struct gso_layout *lo)
{
  unsigned base = hdr->gso_type & ~(unsigned)VIRTIO_NET_HDR_GSO_ECN;
  if (base == VIRTIO_NET_HDR_GSO_TCPV4) {
    if (len < 20 || pkt[0] >> 4 != 4)
      return -EINVAL;
    lo->iph_len = (size_t)(pkt[0] & 15) * 4;
    lo->v6 = false;
    if (lo->iph_len < 20 || len < lo->iph_len || pkt[9] != IPPROTO_TCP_ ||
        (rd16(pkt + 6) & IPV4_FRAG_MASK) || rd16(pkt + 2) != len)
      return -EINVAL;
  } else if (base == VIRTIO_NET_HDR_GSO_TCPV6) {
    /* Extension headers would need walking, and a routing header changes the pseudo-header
     * destination (RFC 8200 8.1); Linux TCP does not send them with TSO. */
    if (len < 40 || pkt[0] >> 4 != 6 || pkt[6] != IPPROTO_TCP_ || (size_t)rd16(pkt + 4) + 40 != len)
      return -EINVAL;
    lo->iph_len = 40;
    lo->v6 = true;
  } else {
    return -EINVAL; /* UDP (UFO), UDP_L4 (USO: not negotiated), unknown */
  }
  if (hdr->gso_size == 0 || len < lo->iph_len + 20)
    return -EINVAL;
  lo->tcph_len = (size_t)(pkt[lo->iph_len + 12] >> 4) * 4;
  if (lo->tcph_len < 20 || len < lo->iph_len + lo->tcph_len)
    return -EINVAL;
  if ((hdr->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) &&
      (hdr->csum_start != lo->iph_len || hdr->csum_offset != TCP_CHECK_OFF))
    return -EINVAL;
  return 0;
}

int meshd_offload_split(const struct virtio_net_hdr *hdr, const uint8_t *pkt, size_t len,
                        uint8_t *out, size_t stride, size_t max_segs, uint32_t *seg_lens)
{
  if (!hdr || (!pkt && len) || !out || !seg_lens || len > UINT32_MAX)
    return -EINVAL;
  int r = check_flags(hdr);
  if (r < 0)
    return r;

  if (hdr->gso_type == VIRTIO_NET_HDR_GSO_NONE) {
    bool partial = hdr->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM;
    if (partial && (r = check_partial(hdr, pkt, len)) < 0)
      return r;
    if (max_segs < 1 || len > stride)
      return -ENOSPC;
    if (len)
      memcpy(out, pkt, len);
    if (partial)
      complete_partial(out, len, hdr->csum_start, hdr->csum_offset);
    seg_lens[0] = (uint32_t)len;
    return 1;
  }

  struct gso_layout lo;
  if ((r = parse_gso(hdr, pkt, len, &lo)) < 0)
    return r;
  const size_t hl = lo.iph_len + lo.tcph_len, mss = hdr->gso_size;
  const size_t payload = len - hl;
  const size_t nsegs = payload ? (payload + mss - 1) / mss : 1;
  if (nsegs > max_segs || hl + (payload < mss ? payload : mss) > stride)
    return -ENOSPC;

  const size_t alen = lo.v6 ? 16 : 4;
  const uint8_t *src = pkt + (lo.v6 ? 8 : 12);
  /* Pseudo-header without the length, which differs per segment. */
  const uint16_t pseudo = meshd_csum_pseudo(src, src + alen, alen, IPPROTO_TCP_, 0);
  const uint32_t seq0 = rd32(pkt + lo.iph_len + 4);
  const uint16_t id0 = lo.v6 ? 0 : rd16(pkt + 4);

  size_t pos = hl;
  for (size_t i = 0; i < nsegs; i++) {
    uint8_t *o = out + i * stride;
    size_t seg = payload - (pos - hl) < mss ? payload - (pos - hl) : mss;
    size_t seg_len = hl + seg;
    bool last = i + 1 == nsegs;

    memcpy(o, pkt, hl);
    if (lo.v6) {
      wr16(o + 4, (uint16_t)(seg_len - 40));
    } else {
      wr16(o + 2, (uint16_t)seg_len);
      wr16(o + 4, (uint16_t)(id0 + i)); /* inet_gso_segment(): ID + segment index */
      o[10] = o[11] = 0;
      wr16(o + 10, (uint16_t)~meshd_csum_partial(o, lo.iph_len, 0));
    }
    uint8_t *th = o + lo.iph_len;
    wr32(th + 4, seq0 + (uint32_t)(i * mss));
    /* tcp_gso_segment(): FIN/PSH belong to the last segment, CWR to the first (whether or
     * not the ECN gso bit is set: it only tells a device that CWR may be present). */
    if (!last)
      th[13] &= (uint8_t)~(TCP_FIN | TCP_PSH);
    if (i > 0)
      th[13] &= (uint8_t)~TCP_CWR;
    memcpy(o + hl, pkt + pos, seg);
    th[16] = th[17] = 0;
    size_t l4 = lo.tcph_len + seg;
    uint16_t s = meshd_csum_add(pseudo, (uint16_t)l4);
    wr16(th + 16, (uint16_t)~meshd_csum_partial(th, l4, s));
    seg_lens[i] = (uint32_t)seg_len;
    pos += seg;
  }
  return (int)nsegs;
}

/* ---- write side ---- */

/* What coalescing needs to know about one packet. */
struct pinfo {
  uint32_t hash;
  uint32_t seq;
  uint16_t payload;
  uint8_t iph_len, tcph_len;
  bool v6;
  bool keyed;     /* a TCP flow key (addresses, ports) could be read */
  bool candidate; /* may join or start a super-packet */
  uint8_t flags;
};

static inline uint32_t mix64(uint64_t x)
{
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return (uint32_t)x;
}

static void parse_pkt(const uint8_t *p, uint32_t len, struct pinfo *pi)
{
  memset(pi, 0, sizeof *pi);
  if (len < 20)
    return;
  size_t iph, alen, aoff;
  bool clean;
  if (p[0] >> 4 == 4) {
    iph = (size_t)(p[0] & 15) * 4;
    /* A fragment has no (or no complete) TCP header to key on. */
    if (iph < 20 || len < iph + 20 || p[9] != IPPROTO_TCP_ || (rd16(p + 6) & IPV4_FRAG_MASK))
      return;
    alen = 4;
    aoff = 12;
    /* inet_gro_receive() only merges option-less headers (*(u8 *)iph == 0x45); the header
     * checksum is verified here because the merged header replaces the others. */
    clean = iph == 20 && rd16(p + 2) == len && meshd_csum_partial(p, 20, 0) == 0xffff;
  } else if (p[0] >> 4 == 6) {
    iph = 40;
    if (len < 60 || p[6] != IPPROTO_TCP_)
      return;
    alen = 16;
    aoff = 8;
    pi->v6 = true;
    clean = (size_t)rd16(p + 4) + 40 == len;
  } else {
    return;
  }
  const uint8_t *th = p + iph;
  uint64_t h = load64(p + aoff) * 0x9e3779b97f4a7c15ull;
  if (alen == 16)
    h ^= (load64(p + aoff + 8) + load64(p + aoff + 16) * 31 + load64(p + aoff + 24) * 131) *
         0xc2b2ae3d27d4eb4full;
  uint32_t ports;
  memcpy(&ports, th, 4);
  pi->hash = mix64(h ^ ports ^ (uint64_t)alen << 40);
  pi->keyed = true;
  pi->iph_len = (uint8_t)iph;

  size_t thl = (size_t)(th[12] >> 4) * 4;
  if (!clean || thl < 20 || len < iph + thl || len > MESHD_GRO_MAX_IP_LEN)
    return;
  pi->tcph_len = (uint8_t)thl;
  pi->flags = th[13];
  pi->seq = rd32(th + 4);
  pi->payload = (uint16_t)(len - iph - thl);
  /* tcp_gro_receive() flushes on SYN/RST/URG and on CWR; data needs ACK. */
  pi->candidate = pi->payload > 0 && (pi->flags & TCP_ACK) &&
                  !(pi->flags & (TCP_SYN | TCP_RST | TCP_URG | TCP_CWR));
}

static bool same_flow(const uint8_t *a, const uint8_t *b, const struct pinfo *pa,
                      const meshd_gro_item *it)
{
  if (pa->v6 != it->v6)
    return false;
  if (pa->v6)
    return memcmp(a + 8, b + 8, 32) == 0 && memcmp(a + 40, b + 40, 4) == 0;
  return memcmp(a + 12, b + 12, 8) == 0 && memcmp(a + pa->iph_len, b + it->iph_len, 4) == 0;
}

/* Can packet p (info pi) be appended to open item it, whose first packet is f? */
static bool can_append(const uint8_t *p, const struct pinfo *pi, const uint8_t *f,
                       const meshd_gro_item *it)
{
  if (pi->iph_len != it->iph_len || pi->tcph_len != it->tcph_len || pi->seq != it->seq_next ||
      pi->payload > it->gso_size || it->ip_len + pi->payload > MESHD_GRO_MAX_IP_LEN)
    return false;
  if (pi->v6) {
    /* version, traffic class, flow label; hop limit (ipv6_gro_receive()) */
    if (memcmp(p, f, 4) != 0 || p[7] != f[7])
      return false;
  } else {
    uint16_t frag = rd16(p + 6);
    if (p[1] != f[1] || p[8] != f[8] || (frag & IPV4_DF) != (rd16(f + 6) & IPV4_DF))
      return false;
    /* Without DF the ID matters (RFC 6864 4.1); a resegmenting kernel would write
     * first ID + i, so only coalesce when that is what the segments carry. */
    if (!(frag & IPV4_DF) && rd16(p + 4) != (uint16_t)(it->ip_id + it->count))
      return false;
  }
  const uint8_t *th = p + pi->iph_len, *fh = f + it->iph_len;
  /* ACK number, data offset + reserved bits, flags but PSH/FIN, window, options. */
  if (memcmp(th + 8, fh + 8, 5) != 0 || ((th[13] ^ fh[13]) & ~(TCP_PSH | TCP_FIN)) ||
      memcmp(th + 14, fh + 14, 2) != 0 || memcmp(th + 20, fh + 20, pi->tcph_len - 20) != 0)
    return false;
  return true;
}

static bool tcp_csum_ok(const uint8_t *p, uint32_t len, size_t iph_len, bool v6)
{
  size_t alen = v6 ? 16 : 4;
  const uint8_t *src = p + (v6 ? 8 : 12);
  uint16_t s = meshd_csum_pseudo(src, src + alen, alen, IPPROTO_TCP_, (uint32_t)(len - iph_len));
  return meshd_csum_partial(p + iph_len, len - iph_len, s) == 0xffff;
}

static void put_vnet_hdr(uint8_t *at, const struct virtio_net_hdr *h)
{
  memcpy(at, h, sizeof *h);
}

int meshd_offload_coalesce(meshd_gro *gro, const meshd_pkt *pkts, size_t n, struct iovec *iov,
                           size_t iov_cap, meshd_offload_write *writes, size_t writes_cap)
{
  if (!gro || (n && (!pkts || !iov || !writes)) || n > MESHD_GRO_BATCH_MAX)
    return -EINVAL;
  if (iov_cap < n || writes_cap < n)
    return -ENOSPC;
  const size_t nslots = sizeof gro->slots / sizeof gro->slots[0];
  memset(gro->slots, 0, sizeof gro->slots);
  size_t nitems = 0;

  for (size_t i = 0; i < n; i++) {
    const uint8_t *p = pkts[i].data;
    struct pinfo pi;
    parse_pkt(p, pkts[i].len, &pi);
    gro->next[i] = UINT16_MAX;

    uint16_t *slot = NULL;
    if (pi.keyed) {
      /* Linear probing; the table is at most half full. A slot points at its flow's newest
       * item, the only one that may grow. */
      size_t s = pi.hash & (nslots - 1);
      for (;;) {
        uint16_t v = gro->slots[s];
        if (!v) {
          slot = &gro->slots[s];
          break;
        }
        meshd_gro_item *it = &gro->items[v - 1];
        if (it->hash == pi.hash && same_flow(p, pkts[it->first].data, &pi, it)) {
          slot = &gro->slots[s];
          if (it->open && pi.candidate && can_append(p, &pi, pkts[it->first].data, it)) {
            const meshd_pkt *f = &pkts[it->first];
            if (!it->verified) {
              it->verified = tcp_csum_ok(f->data, f->len, it->iph_len, it->v6);
              if (!it->verified) {
                it->open = 0;
                break;
              }
            }
            if (!tcp_csum_ok(p, pkts[i].len, pi.iph_len, pi.v6)) {
              it->open = 0;
              pi.candidate = false; /* written alone; the kernel drops it */
              break;
            }
            gro->next[it->last] = (uint16_t)i;
            it->last = (uint16_t)i;
            it->count++;
            it->ip_len += pi.payload;
            it->seq_next += pi.payload;
            if (pi.payload < it->gso_size || (pi.flags & (TCP_PSH | TCP_FIN)))
              it->open = 0; /* nothing may follow a short segment, PSH or FIN */
            goto next_pkt;
          }
          /* Packet i starts a new item and the slot moves to it, so this one can no longer
           * grow: a flow's packets stay in batch order. */
          break;
        }
        s = (s + 1) & (nslots - 1);
      }
    }

    /* A new item for packet i. */
    meshd_gro_item *it = &gro->items[nitems];
    memset(it, 0, sizeof *it);
    it->hash = pi.hash;
    it->first = it->last = (uint16_t)i;
    it->count = 1;
    it->v6 = pi.v6;
    it->iph_len = pi.iph_len;
    it->tcph_len = pi.tcph_len;
    it->open = pi.candidate && !(pi.flags & (TCP_PSH | TCP_FIN));
    if (pi.candidate) {
      it->gso_size = pi.payload;
      it->ip_len = pkts[i].len;
      it->seq_next = pi.seq + pi.payload;
      it->ip_id = pi.v6 ? 0 : rd16(p + 4);
    }
    nitems++;
    if (slot)
      *slot = (uint16_t)nitems;
  next_pkt:;
  }

  size_t k = 0;
  for (size_t w = 0; w < nitems; w++) {
    const meshd_gro_item *it = &gro->items[w];
    const meshd_pkt *f = &pkts[it->first];
    uint8_t *fp = f->data;
    struct virtio_net_hdr vh;
    memset(&vh, 0, sizeof vh);
    meshd_offload_write *wr = &writes[w];
    wr->iov_first = (uint32_t)k;
    wr->pkt_first = it->first;
    wr->pkt_count = it->count;
    wr->bytes = MESHD_VNET_HDR_LEN + f->len;
    iov[k].iov_base = fp - MESHD_VNET_HDR_LEN;
    iov[k].iov_len = MESHD_VNET_HDR_LEN + f->len;
    k++;
    if (it->count > 1) {
      const size_t hl = (size_t)it->iph_len + it->tcph_len;
      for (uint16_t j = gro->next[it->first]; j != UINT16_MAX; j = gro->next[j]) {
        iov[k].iov_base = pkts[j].data + hl;
        iov[k].iov_len = pkts[j].len - hl;
        wr->bytes += iov[k].iov_len;
        k++;
      }
      const uint8_t *lp = pkts[it->last].data;
      uint8_t *th = fp + it->iph_len;
      if (it->v6) {
        wr16(fp + 4, (uint16_t)(it->ip_len - 40));
        vh.gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
      } else {
        uint16_t old = rd16(fp + 2);
        wr16(fp + 2, (uint16_t)it->ip_len);
        wr16(fp + 10, meshd_csum_replace16(rd16(fp + 10), old, (uint16_t)it->ip_len));
        vh.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
      }
      th[13] |= lp[it->iph_len + 13] & (TCP_PSH | TCP_FIN);
      size_t alen = it->v6 ? 16 : 4;
      const uint8_t *src = fp + (it->v6 ? 8 : 12);
      wr16(th + TCP_CHECK_OFF,
           meshd_csum_pseudo(src, src + alen, alen, IPPROTO_TCP_, it->ip_len - it->iph_len));
      vh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
      vh.hdr_len = (uint16_t)hl;
      vh.gso_size = it->gso_size;
      vh.csum_start = it->iph_len;
      vh.csum_offset = TCP_CHECK_OFF;
    }
    put_vnet_hdr(fp - MESHD_VNET_HDR_LEN, &vh);
    wr->iov_count = (uint32_t)k - wr->iov_first;
  }
  return (int)nitems;
}
