// sources: offload.c
/*
 * offload_test: standalone tests for native/src/offload.c (no Node). Run by native/test/run.sh
 * under -fsanitize=address,undefined. `offload_test --bench` prints timings instead.
 *
 * Every check is against independent slow references: a byte-at-a-time RFC 1071 sum over
 * an explicitly built pseudo-header, and a re-implementation of what the kernel requires of a
 * GSO write (tun_vnet_hdr_get() + __virtio_net_hdr_to_skb(), Linux 6.18).
 */
#include "offload.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures;
/* What the fuzzers reached, printed at the end so coverage is visible. */
static long n_gso_ok, n_plain_ok, n_einval, n_enospc, n_super_writes, n_super_pkts, n_single;
#define CHECK(cond)                                                                       \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      fprintf(stderr, "%s:%d: %s: CHECK failed: %s\n", __FILE__, __LINE__, __func__, #cond); \
      failures++;                                                                         \
      if (failures > 20)                                                                  \
        exit(1);                                                                          \
    }                                                                                     \
  } while (0)
#define CHECK_EQ(a, b)                                                                    \
  do {                                                                                    \
    long long a_ = (long long)(a), b_ = (long long)(b);                                   \
    if (a_ != b_) {                                                                       \
      fprintf(stderr, "%s:%d: %s: CHECK_EQ failed: %s == %lld, %s == %lld\n", __FILE__,   \
              __LINE__, __func__, #a, a_, #b, b_);                                        \
      failures++;                                                                         \
      if (failures > 20)                                                                  \
        exit(1);                                                                          \
    }                                                                                     \
  } while (0)

/* ---- PRNG (xorshift64*), seeded: failures reproduce ---- */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1dull;
}
static size_t rndn(size_t n) { return n ? (size_t)(rnd() % n) : 0; }
static void rnd_fill(uint8_t *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)rnd();
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void put16(uint8_t *p, uint16_t v)
{
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static void put32(uint8_t *p, uint32_t v)
{
  put16(p, (uint16_t)(v >> 16));
  put16(p + 2, (uint16_t)v);
}

/* ---- slow references ---- */

/* RFC 1071, one byte at a time: big-endian 16-bit words, odd byte padded, end-around carry. */
static uint16_t ref_sum(const uint8_t *p, size_t len, uint32_t sum)
{
  for (size_t i = 0; i < len; i++) {
    sum += (i & 1) ? p[i] : (uint32_t)p[i] << 8;
    while (sum >> 16)
      sum = (sum & 0xffff) + (sum >> 16);
  }
  return (uint16_t)sum;
}

/* TCP/UDP checksum verifies: sum over an explicit pseudo-header + segment == 0xffff. */
static bool ref_l4_ok(const uint8_t *pkt, size_t len, size_t l4off, uint8_t proto)
{
  uint8_t ph[40];
  size_t phl, l4len = len - l4off;
  memset(ph, 0, sizeof ph);
  if (pkt[0] >> 4 == 4) {
    memcpy(ph, pkt + 12, 8); /* RFC 9293 3.1 */
    ph[9] = proto;
    put16(ph + 10, (uint16_t)l4len);
    phl = 12;
  } else {
    memcpy(ph, pkt + 8, 32); /* RFC 8200 8.1 */
    put32(ph + 32, (uint32_t)l4len);
    ph[39] = proto;
    phl = 40;
  }
  uint16_t s = ref_sum(ph, phl, 0);
  return ref_sum(pkt + l4off, l4len, s) == 0xffff;
}
static bool ref_ip4_ok(const uint8_t *pkt) { return ref_sum(pkt, (size_t)(pkt[0] & 15) * 4, 0) == 0xffff; }

/* Does the kernel accept this write (hdr + pkt) as a TCP GSO packet, and segment it? */
static bool kernel_accepts_gso(const struct virtio_net_hdr *h, const uint8_t *pkt, size_t len)
{
  unsigned start = h->csum_start, off = h->csum_offset, hdr_len = h->hdr_len;
  unsigned base = h->gso_type & ~(unsigned)VIRTIO_NET_HDR_GSO_ECN;
  unsigned nh_min = base == VIRTIO_NET_HDR_GSO_TCPV6 ? 40 : 20;
  if (!(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || (h->flags & ~1u))
    return false;
  if (start + off + 2 > hdr_len) /* tun_vnet_hdr_get() */
    hdr_len = start + off + 2;
  if (hdr_len > len)
    return false;
  if (base != VIRTIO_NET_HDR_GSO_TCPV4 && base != VIRTIO_NET_HDR_GSO_TCPV6)
    return false;
  if (h->gso_size == 0 || h->gso_size == 0xffff) /* GSO_BY_FRAGS */
    return false;
  if (start + (off + 2 > 20 ? off + 2 : 20) > len || start < nh_min || off != 16)
    return false;
  if (len - (start + 20) <= h->gso_size) /* "too small packets are not really GSO ones" */
    return false;
  /* What tun_get_user() infers from the first nibble must match the GSO type. */
  return (pkt[0] >> 4) == (base == VIRTIO_NET_HDR_GSO_TCPV6 ? 6 : 4);
}

/* ---- packet builders ---- */

struct flow {
  bool v6;
  uint8_t src[16], dst[16];
  uint16_t sport, dport;
  uint32_t seq, ack;
  uint16_t win, ip_id;
  uint8_t ttl, tos;
  bool df;
  uint32_t tsval;  /* TCP timestamp value */
  size_t opt_len;  /* TCP options (multiple of 4) */
  size_t ip_opts;  /* IPv4 options (multiple of 4) */
};

static void flow_init(struct flow *f, bool v6, uint8_t tag)
{
  memset(f, 0, sizeof *f);
  f->v6 = v6;
  if (v6) {
    static const uint8_t s[16] = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    memcpy(f->src, s, 16);
    memcpy(f->dst, s, 16);
    f->dst[15] = 2;
  } else {
    uint8_t s[4] = {100, 64, 0, 1}, d[4] = {100, 64, 0, 2};
    memcpy(f->src, s, 4);
    memcpy(f->dst, d, 4);
  }
  f->src[v6 ? 14 : 2] = tag;
  f->sport = (uint16_t)(40000 + tag);
  f->dport = 443;
  f->seq = 0xfffff000u - tag * 7919u; /* wraps within a 64 KiB send: seq arithmetic is mod 2^32 */
  f->ack = 0x12345678u + tag;
  f->win = 502;
  f->ip_id = (uint16_t)(0xfff0 + tag);
  f->ttl = 64;
  f->df = true;
  f->opt_len = 12; /* NOP NOP timestamps */
  f->tsval = 0xabcdef01u;
}

static size_t hdr_len_of(const struct flow *f) { return (f->v6 ? 40 : 20 + f->ip_opts) + 20 + f->opt_len; }

/* Writes IP + TCP headers for a packet with `payload` bytes; checksums are left to callers. */
static size_t build_headers(const struct flow *f, uint8_t *p, size_t payload, uint8_t flags,
                            uint32_t seq, uint16_t ip_id)
{
  size_t iph = f->v6 ? 40 : 20 + f->ip_opts, thl = 20 + f->opt_len, len = iph + thl + payload;
  memset(p, 0, iph + thl);
  if (f->v6) {
    p[0] = 0x60 | (f->tos >> 4);
    p[1] = (uint8_t)(f->tos << 4) | 0x0a; /* flow label 0xa1234 */
    p[2] = 0x12;
    p[3] = 0x34;
    put16(p + 4, (uint16_t)(len - 40));
    p[6] = 6;
    p[7] = f->ttl;
    memcpy(p + 8, f->src, 16);
    memcpy(p + 24, f->dst, 16);
  } else {
    p[0] = (uint8_t)(0x40 | (iph / 4));
    p[1] = f->tos;
    put16(p + 2, (uint16_t)len);
    put16(p + 4, ip_id);
    put16(p + 6, f->df ? 0x4000 : 0);
    p[8] = f->ttl;
    p[9] = 6;
    memcpy(p + 12, f->src, 4);
    memcpy(p + 16, f->dst, 4);
    for (size_t i = 20; i < iph; i++)
      p[i] = 1; /* NOP options */
    put16(p + 10, (uint16_t)~ref_sum(p, iph, 0));
  }
  uint8_t *t = p + iph;
  put16(t, f->sport);
  put16(t + 2, f->dport);
  put32(t + 4, seq);
  put32(t + 8, f->ack);
  t[12] = (uint8_t)((thl / 4) << 4);
  t[13] = flags;
  put16(t + 14, f->win);
  for (size_t i = 20; i + 10 <= thl; i += 12) { /* NOP NOP TS(10): val, ecr */
    t[i] = 1;
    t[i + 1] = 1;
    t[i + 2] = 8;
    t[i + 3] = 10;
    put32(t + i + 4, f->tsval);
    put32(t + i + 8, 0x10203040u);
  }
  return len;
}

/* The partial checksum a TCP sender leaves for offload: pseudo-header sum, not complemented. */
static void set_partial_tcp(uint8_t *p, size_t len, size_t iph)
{
  uint8_t ph[40];
  size_t phl;
  memset(ph, 0, sizeof ph);
  if (p[0] >> 4 == 4) {
    memcpy(ph, p + 12, 8);
    ph[9] = 6;
    put16(ph + 10, (uint16_t)(len - iph));
    phl = 12;
  } else {
    memcpy(ph, p + 8, 32);
    put32(ph + 32, (uint32_t)(len - iph));
    ph[39] = 6;
    phl = 40;
  }
  put16(p + iph + 16, ref_sum(ph, phl, 0));
}

/* A plain, fully checksummed TCP segment. */
static size_t build_segment(const struct flow *f, uint8_t *p, const uint8_t *payload, size_t n,
                            uint8_t flags, uint32_t seq, uint16_t ip_id)
{
  size_t hl = hdr_len_of(f), iph = f->v6 ? 40 : 20 + f->ip_opts;
  size_t len = build_headers(f, p, n, flags, seq, ip_id);
  memcpy(p + hl, payload, n);
  uint8_t *t = p + iph;
  t[16] = t[17] = 0;
  set_partial_tcp(p, len, iph); /* the field now holds the pseudo-header sum ... */
  put16(t + 16, (uint16_t)~ref_sum(t, len - iph, 0)); /* ... which this sum includes */
  return len;
}

/* A super-packet as the kernel hands it to a TUN with TSO: partial checksum, GSO header. */
static size_t build_super(const struct flow *f, uint8_t *p, const uint8_t *payload, size_t n,
                          uint8_t flags, uint16_t mss, bool ecn, struct virtio_net_hdr *vh)
{
  size_t hl = hdr_len_of(f), iph = f->v6 ? 40 : 20 + f->ip_opts;
  size_t len = build_headers(f, p, n, flags, f->seq, f->ip_id);
  memcpy(p + hl, payload, n);
  set_partial_tcp(p, len, iph);
  memset(vh, 0, sizeof *vh);
  vh->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  vh->gso_type = (uint8_t)((f->v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4) |
                           (ecn ? VIRTIO_NET_HDR_GSO_ECN : 0));
  vh->hdr_len = (uint16_t)hl;
  vh->gso_size = mss;
  vh->csum_start = (uint16_t)iph;
  vh->csum_offset = 16;
  return len;
}

/* ---- checksum tests ---- */

static void test_checksum(void)
{
  /* RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2. */
  static const uint8_t ex[8] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  CHECK_EQ(meshd_csum_partial(ex, 8, 0), 0xddf2);
  CHECK_EQ(meshd_csum_partial(ex, 0, 0x1234), 0x1234);

  static uint8_t buf[4200];
  for (int iter = 0; iter < 20000; iter++) {
    size_t off = rndn(8), len = iter < 200 ? (size_t)iter : rndn(4096);
    uint16_t init = (uint16_t)rnd();
    if (iter % 7 == 0)
      memset(buf, 0xff, sizeof buf); /* carries everywhere */
    else
      rnd_fill(buf, sizeof buf);
    uint16_t got = meshd_csum_partial(buf + off, len, init);
    uint16_t want = ref_sum(buf + off, len, init);
    /* 0x0000 and 0xffff are the same number in one's complement; the fast sum cannot tell
     * which a zero-length input with initial 0 should be, so compare modulo that. */
    if (got != want && !((got == 0 || got == 0xffff) && (want == 0 || want == 0xffff))) {
      fprintf(stderr, "csum mismatch len %zu off %zu init %04x: %04x vs %04x\n", len, off, init,
              got, want);
      failures++;
      break;
    }
  }

  /* RFC 1624: updating one word incrementally equals recomputing. */
  for (int iter = 0; iter < 5000; iter++) {
    uint8_t h[20];
    rnd_fill(h, sizeof h);
    h[10] = h[11] = 0;
    put16(h + 10, (uint16_t)~ref_sum(h, 20, 0));
    size_t w = 2 * rndn(10);
    if (w == 10)
      continue;
    uint16_t old = get16(h + w), nw = (uint16_t)rnd();
    uint16_t inc = meshd_csum_replace16(get16(h + 10), old, nw);
    put16(h + w, nw);
    h[10] = h[11] = 0;
    uint16_t full = (uint16_t)~ref_sum(h, 20, 0);
    CHECK(inc == full || (inc == 0 && full == 0xffff) || (inc == 0xffff && full == 0));
    put16(h + 10, inc);
    CHECK_EQ(ref_sum(h, 20, 0), 0xffff);
  }

  /* Pseudo-headers, both families, against explicit byte layouts. */
  for (int iter = 0; iter < 2000; iter++) {
    uint8_t a[32], ph[40];
    rnd_fill(a, sizeof a);
    uint32_t l = (uint32_t)rndn(65536);
    memset(ph, 0, sizeof ph);
    memcpy(ph, a, 8);
    ph[9] = 6;
    put16(ph + 10, (uint16_t)l);
    CHECK_EQ(meshd_csum_pseudo(a, a + 4, 4, 6, l), ref_sum(ph, 12, 0));
    memset(ph, 0, sizeof ph);
    memcpy(ph, a, 32);
    put32(ph + 32, l);
    ph[39] = 17;
    CHECK_EQ(meshd_csum_pseudo(a, a + 16, 16, 17, l), ref_sum(ph, 40, 0));
  }
}

/* ---- split tests ---- */

#define STRIDE 2048
#define MAXSEG 64
static uint8_t seg_out[MAXSEG * STRIDE];
static uint32_t seg_lens[MAXSEG];
static uint8_t payload_src[70000];

/* Checks segments of a split super-packet (built from flow f, `n` payload bytes, flags,
 * mss) independently. */
static void check_segments(const struct flow *f, int nsegs, const uint8_t *payload, size_t n,
                           uint8_t flags, uint16_t mss)
{
  size_t hl = hdr_len_of(f), iph = f->v6 ? 40 : 20 + f->ip_opts;
  size_t want = n ? (n + mss - 1) / mss : 1, pos = 0;
  CHECK_EQ(nsegs, want);
  for (int i = 0; i < nsegs; i++) {
    const uint8_t *s = seg_out + (size_t)i * STRIDE;
    size_t len = seg_lens[i], pay = len - hl;
    bool last = i == nsegs - 1;
    CHECK_EQ(pay, last ? n - pos : mss);
    if (f->v6) {
      CHECK_EQ(get16(s + 4), len - 40);
    } else {
      CHECK_EQ(get16(s + 2), len);
      CHECK_EQ(get16(s + 4), (uint16_t)(f->ip_id + i));
      CHECK_EQ(get16(s + 6), f->df ? 0x4000 : 0);
      CHECK(ref_ip4_ok(s));
    }
    const uint8_t *t = s + iph;
    CHECK_EQ(get32(t + 4), (uint32_t)(f->seq + pos));
    CHECK_EQ(get32(t + 8), f->ack);
    uint8_t fl = flags;
    if (!last)
      fl &= (uint8_t)~0x09; /* FIN, PSH */
    if (i > 0)
      fl &= (uint8_t)~0x80; /* CWR */
    CHECK_EQ(t[13], fl);
    CHECK(ref_l4_ok(s, len, iph, 6));
    CHECK(memcmp(s + hl, payload + pos, pay) == 0);
    pos += pay;
  }
  CHECK_EQ(pos, n);
}

static void test_split_tso(void)
{
  rnd_fill(payload_src, sizeof payload_src);
  static uint8_t pkt[70000];
  struct virtio_net_hdr vh;
  for (int v6 = 0; v6 <= 1; v6++) {
    struct flow f;
    flow_init(&f, v6, 1);
    size_t hl = hdr_len_of(&f);
    /* max super-packet, exact multiple, one byte over, one byte, no payload */
    size_t sizes[] = {65535 - hl, 1380 * 40, 1380 * 40 + 1, 1, 0, 3000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      uint8_t flags = k == 5 ? 0x10 | 0x08 | 0x01 | 0x80 : 0x18; /* ACK PSH (FIN CWR) */
      size_t len = build_super(&f, pkt, payload_src, sizes[k], flags, 1380, k == 5, &vh);
      int r = meshd_offload_split(&vh, pkt, len, seg_out, STRIDE, MAXSEG, seg_lens);
      check_segments(&f, r, payload_src, sizes[k], flags, 1380);
      CHECK_EQ(meshd_offload_complete_csum(&vh, pkt, len), MESHD_OFFLOAD_NEEDS_SPLIT);
    }
    /* hdr_len is only a hint: the kernel may report the whole first segment there. */
    size_t len = build_super(&f, pkt, payload_src, 5000, 0x10, 1000, false, &vh);
    vh.hdr_len = 1000;
    check_segments(&f, meshd_offload_split(&vh, pkt, len, seg_out, STRIDE, MAXSEG, seg_lens),
                   payload_src, 5000, 0x10, 1000);
    /* Without NEEDS_CSUM the headers are parsed all the same. */
    vh.flags = 0;
    vh.csum_start = vh.csum_offset = 0;
    check_segments(&f, meshd_offload_split(&vh, pkt, len, seg_out, STRIDE, MAXSEG, seg_lens),
                   payload_src, 5000, 0x10, 1000);
  }
  /* IPv4 options and DF clear. */
  struct flow f;
  flow_init(&f, false, 2);
  f.ip_opts = 8;
  f.df = false;
  size_t len = build_super(&f, pkt, payload_src, 9000, 0x18, 1448, false, &vh);
  check_segments(&f, meshd_offload_split(&vh, pkt, len, seg_out, STRIDE, MAXSEG, seg_lens),
                 payload_src, 9000, 0x18, 1448);
}

static void test_split_plain(void)
{
  static uint8_t pkt[2000], copy[2000];
  struct virtio_net_hdr vh;
  struct flow f;
  for (int v6 = 0; v6 <= 1; v6++) {
    flow_init(&f, v6, 3);
    size_t iph = v6 ? 40 : 20;
    /* TCP with a partial checksum (CHECKSUM_PARTIAL, no GSO). */
    size_t len = build_headers(&f, pkt, 700, 0x18, 1, 1);
    rnd_fill(pkt + hdr_len_of(&f), 700);
    set_partial_tcp(pkt, len, iph);
    memset(&vh, 0, sizeof vh);
    vh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    vh.csum_start = (uint16_t)iph;
    vh.csum_offset = 16;
    CHECK_EQ(meshd_offload_split(&vh, pkt, len, seg_out, STRIDE, 1, seg_lens), 1);
    CHECK_EQ(seg_lens[0], len);
    CHECK(ref_l4_ok(seg_out, len, iph, 6));
    memcpy(copy, pkt, len);
    CHECK_EQ(meshd_offload_complete_csum(&vh, copy, len), 0);
    CHECK(memcmp(copy, seg_out, len) == 0);

    /* UDP with a partial checksum, odd length. */
    size_t ulen = iph + 8 + 333;
    memcpy(pkt, seg_out, iph);
    if (v6) {
      pkt[6] = 17;
      put16(pkt + 4, (uint16_t)(ulen - 40));
    } else {
      pkt[9] = 17;
      put16(pkt + 2, (uint16_t)ulen);
    }
    uint8_t *u = pkt + iph;
    put16(u, 5353);
    put16(u + 2, 53);
    put16(u + 4, (uint16_t)(ulen - iph));
    rnd_fill(u + 8, 333);
    uint8_t ph[40] = {0};
    size_t phl;
    if (v6) {
      memcpy(ph, pkt + 8, 32);
      put32(ph + 32, (uint32_t)(ulen - iph));
      ph[39] = 17;
      phl = 40;
    } else {
      memcpy(ph, pkt + 12, 8);
      ph[9] = 17;
      put16(ph + 10, (uint16_t)(ulen - iph));
      phl = 12;
    }
    put16(u + 6, ref_sum(ph, phl, 0));
    vh.csum_offset = 6;
    CHECK_EQ(meshd_offload_split(&vh, pkt, ulen, seg_out, STRIDE, 1, seg_lens), 1);
    CHECK(ref_l4_ok(seg_out, ulen, iph, 17));
    CHECK_EQ(meshd_offload_complete_csum(&vh, pkt, ulen), 0);
    CHECK(memcmp(pkt, seg_out, ulen) == 0);
    /* Make the checksum come out as 0: adjust one payload word so the sum is 0xffff. RFC 768:
     * a computed 0 is sent as 0xffff, 0 meaning "no checksum". */
    put16(u + 6, ref_sum(ph, phl, 0)); /* the pseudo sum again (completed just above) */
    uint16_t sum = ref_sum(pkt + iph, ulen - iph, 0);
    uint16_t w = get16(pkt + iph + 8);
    put16(pkt + iph + 8, (uint16_t)(w + (uint16_t)~sum)); /* one's complement add of ~sum */
    if (ref_sum(pkt + iph, ulen - iph, 0) != 0xffff) /* w + ~sum carried: fix up */
      put16(pkt + iph + 8, (uint16_t)(get16(pkt + iph + 8) + 1));
    CHECK_EQ(ref_sum(pkt + iph, ulen - iph, 0), 0xffff);
    CHECK_EQ(meshd_offload_split(&vh, pkt, ulen, seg_out, STRIDE, 1, seg_lens), 1);
    CHECK_EQ(get16(seg_out + iph + 6), 0xffff);
    CHECK(ref_l4_ok(seg_out, ulen, iph, 17));
    CHECK_EQ(meshd_offload_complete_csum(&vh, pkt, ulen), 0);
    CHECK_EQ(get16(pkt + iph + 6), 0xffff);

    /* flags 0 and DATA_VALID: copied through untouched. */
    rnd_fill(pkt, 999);
    memcpy(copy, pkt, 999);
    memset(&vh, 0, sizeof vh);
    for (int fl = 0; fl <= VIRTIO_NET_HDR_F_DATA_VALID; fl += VIRTIO_NET_HDR_F_DATA_VALID) {
      vh.flags = (uint8_t)fl;
      vh.csum_start = 77; /* ignored without NEEDS_CSUM */
      CHECK_EQ(meshd_offload_split(&vh, pkt, 999, seg_out, STRIDE, 1, seg_lens), 1);
      CHECK_EQ(seg_lens[0], 999);
      CHECK(memcmp(seg_out, copy, 999) == 0);
      CHECK_EQ(meshd_offload_complete_csum(&vh, pkt, 999), 0);
      CHECK(memcmp(pkt, copy, 999) == 0);
    }
  }
}

static void test_split_errors(void)
{
  static uint8_t pkt[70000];
  struct virtio_net_hdr vh, good;
  struct flow f;
  flow_init(&f, false, 4);
  size_t len = build_super(&f, pkt, payload_src, 10000, 0x10, 1000, false, &good);
#define SPLIT(h, l) meshd_offload_split(&(h), pkt, (l), seg_out, STRIDE, MAXSEG, seg_lens)
  CHECK_EQ(SPLIT(good, len), 10);
  unsigned bad_types[] = {VIRTIO_NET_HDR_GSO_UDP, VIRTIO_NET_HDR_GSO_UDP_L4, 2, 6, 0x7f,
                          VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_UDP | VIRTIO_NET_HDR_GSO_ECN};
  for (size_t i = 0; i < sizeof bad_types / sizeof bad_types[0]; i++) {
    vh = good;
    vh.gso_type = (uint8_t)bad_types[i];
    CHECK_EQ(SPLIT(vh, len), -EINVAL);
    CHECK_EQ(meshd_offload_complete_csum(&vh, pkt, len), -EINVAL);
  }
  vh = good;
  vh.gso_type = VIRTIO_NET_HDR_GSO_TCPV6; /* an IPv4 packet */
  CHECK_EQ(SPLIT(vh, len), -EINVAL);
  vh = good;
  vh.gso_size = 0;
  CHECK_EQ(SPLIT(vh, len), -EINVAL);
  CHECK_EQ(meshd_offload_complete_csum(&vh, pkt, len), -EINVAL);
  vh = good;
  vh.csum_start = 24;
  CHECK_EQ(SPLIT(vh, len), -EINVAL);
  vh = good;
  vh.csum_offset = 6;
  CHECK_EQ(SPLIT(vh, len), -EINVAL);
  vh = good;
  vh.flags = 4;
  CHECK_EQ(SPLIT(vh, len), -EINVAL);
  vh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID;
  CHECK_EQ(SPLIT(vh, len), -EINVAL);
  CHECK_EQ(SPLIT(good, len - 1), -EINVAL); /* IPv4 total length disagrees */
  CHECK_EQ(SPLIT(good, 30), -EINVAL);
  CHECK_EQ(SPLIT(good, 0), -EINVAL);
  CHECK_EQ(meshd_offload_split(&good, pkt, len, seg_out, STRIDE, 9, seg_lens), -ENOSPC);
  CHECK_EQ(meshd_offload_split(&good, pkt, len, seg_out, 1000 + 52 - 1, MAXSEG, seg_lens), -ENOSPC);
  CHECK_EQ(meshd_offload_split(&good, pkt, len, seg_out, 1000 + 52, 10, seg_lens), 10);
  pkt[9] = 17; /* not TCP */
  CHECK_EQ(SPLIT(good, len), -EINVAL);
  pkt[9] = 6;
  pkt[6] |= 0x20; /* MF */
  CHECK_EQ(SPLIT(good, len), -EINVAL);
  pkt[6] &= (uint8_t)~0x20;
  pkt[20 + 12] = 0x40; /* data offset 4 */
  CHECK_EQ(SPLIT(good, len), -EINVAL);
  pkt[20 + 12] = 0xf0; /* data offset 15: 60 bytes, past a 20 + 59-byte packet */
  put16(pkt + 2, 79);
  CHECK_EQ(SPLIT(good, 79), -EINVAL);
  put16(pkt + 2, (uint16_t)len);
  pkt[20 + 12] = 0x80;
  CHECK_EQ(SPLIT(good, len), 10);
  /* IPv6: payload length must match; extension headers are refused. */
  struct flow f6;
  flow_init(&f6, true, 4);
  size_t len6 = build_super(&f6, pkt, payload_src, 10000, 0x10, 1000, false, &good);
  CHECK_EQ(SPLIT(good, len6), 10);
  CHECK_EQ(SPLIT(good, len6 - 1), -EINVAL);
  pkt[6] = 0; /* hop-by-hop options header */
  CHECK_EQ(SPLIT(good, len6), -EINVAL);
  pkt[6] = 6;
  vh = good;
  vh.gso_type = VIRTIO_NET_HDR_GSO_TCPV4; /* an IPv6 packet */
  CHECK_EQ(SPLIT(vh, len6), -EINVAL);
  len = build_super(&f, pkt, payload_src, 10000, 0x10, 1000, false, &good);
  /* Plain packet with a partial checksum out of range. */
  memset(&vh, 0, sizeof vh);
  vh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  vh.csum_start = 20;
  vh.csum_offset = 16;
  CHECK_EQ(SPLIT(vh, 37), -EINVAL);
  CHECK_EQ(SPLIT(vh, 38), 1);
  vh.csum_offset = 15;
  CHECK_EQ(SPLIT(vh, 100), -EINVAL);
  vh.csum_offset = 16;
  vh.csum_start = 19;
  CHECK_EQ(SPLIT(vh, 100), -EINVAL);
  vh.csum_start = 0xffff;
  vh.csum_offset = 0xfffe;
  CHECK_EQ(SPLIT(vh, 100), -EINVAL);
  CHECK_EQ(meshd_offload_complete_csum(&vh, pkt, 100), -EINVAL);
  memset(&vh, 0, sizeof vh);
  CHECK_EQ(meshd_offload_split(&vh, pkt, 3000, seg_out, 2999, 1, seg_lens), -ENOSPC);
  CHECK_EQ(meshd_offload_split(&vh, pkt, 3000, seg_out, 3000, 0, seg_lens), -ENOSPC);
#undef SPLIT
}

/* ---- coalesce helpers ---- */

struct batch {
  size_t n;
  uint8_t *buf[MESHD_GRO_BATCH_MAX]; /* exact-size allocations: headroom + packet */
  uint8_t *orig[MESHD_GRO_BATCH_MAX];
  meshd_pkt pkts[MESHD_GRO_BATCH_MAX];
};

static void batch_add(struct batch *b, const uint8_t *p, size_t len)
{
  uint8_t *m = malloc(MESHD_VNET_HDR_LEN + len + 1);
  uint8_t *o = malloc(len + 1);
  if (!m || !o)
    abort();
  memcpy(m + MESHD_VNET_HDR_LEN, p, len);
  memcpy(o, p, len);
  b->buf[b->n] = m;
  b->orig[b->n] = o;
  b->pkts[b->n].data = m + MESHD_VNET_HDR_LEN;
  b->pkts[b->n].len = (uint32_t)len;
  b->n++;
}

static void batch_free(struct batch *b)
{
  for (size_t i = 0; i < b->n; i++) {
    free(b->buf[i]);
    free(b->orig[i]);
  }
  b->n = 0;
}

/* Adds the segments of a super-packet of flow f (payload n bytes at mss) to the batch
 * (through meshd_offload_split, like the sending peer). */
static int add_split(struct batch *b, struct flow *f, size_t n, uint16_t mss, uint8_t flags)
{
  static uint8_t pkt[70000];
  struct virtio_net_hdr vh;
  size_t len = build_super(f, pkt, payload_src + f->sport % 512, n, flags, mss, false, &vh);
  int r = meshd_offload_split(&vh, pkt, len, seg_out, STRIDE, MAXSEG, seg_lens);
  CHECK(r > 0);
  for (int i = 0; i < r; i++)
    batch_add(b, seg_out + (size_t)i * STRIDE, seg_lens[i]);
  f->seq += (uint32_t)n;
  f->ip_id = (uint16_t)(f->ip_id + r);
  return r;
}

static meshd_gro gro;
static struct iovec iov[MESHD_GRO_BATCH_MAX];
static meshd_offload_write writes[MESHD_GRO_BATCH_MAX];
static uint8_t flat[70000 + 16];

/* Concatenates write w's iovecs into flat; returns its length. */
static size_t gather(const meshd_offload_write *w)
{
  size_t len = 0;
  for (uint32_t k = 0; k < w->iov_count; k++) {
    const struct iovec *v = &iov[w->iov_first + k];
    CHECK(len + v->iov_len <= sizeof flat);
    if (len + v->iov_len > sizeof flat)
      return 0;
    memcpy(flat + len, v->iov_base, v->iov_len);
    len += v->iov_len;
  }
  CHECK_EQ(len, w->bytes);
  return len;
}

static bool tcp_key(const uint8_t *p, size_t len, uint8_t key[37])
{
  memset(key, 0, 37);
  if (len >= 40 && p[0] >> 4 == 4 && p[9] == 6 && !(get16(p + 6) & 0x3fff)) {
    size_t iph = (size_t)(p[0] & 15) * 4;
    if (iph < 20 || len < iph + 4)
      return false;
    key[0] = 4;
    memcpy(key + 1, p + 12, 8);
    memcpy(key + 33, p + iph, 4);
    return true;
  }
  if (len >= 60 && p[0] >> 4 == 6 && p[6] == 6) {
    key[0] = 6;
    memcpy(key + 1, p + 8, 32);
    memcpy(key + 33, p + 40, 4);
    return true;
  }
  return false;
}

/*
 * Runs coalesce on b and checks every invariant: each packet in exactly one write, one
 * iovec each, writes ordered by first packet, every flow's packets in batch order, iovecs
 * inside the packets' buffers, single writes = zero header + the untouched packet, and each
 * super-packet accepted by the kernel's rules and resegmented (by meshd_offload_split, as
 * the kernel would) into exactly the original packets. Returns the number of writes and
 * stores each write's packet count in groups[].
 */
static int coalesce_check(struct batch *b, uint32_t *groups)
{
  int nw = meshd_offload_coalesce(&gro, b->pkts, b->n, iov, b->n, writes, b->n);
  CHECK(nw >= 0 && (size_t)nw <= b->n);
  if (nw < 0)
    return nw;
  size_t iovs = 0, pkts = 0;
  uint32_t order[MESHD_GRO_BATCH_MAX];
  bool seen[MESHD_GRO_BATCH_MAX] = {false};
  for (int w = 0; w < nw; w++) {
    const meshd_offload_write *wr = &writes[w];
    CHECK_EQ(wr->iov_first, iovs);
    CHECK(w == 0 || wr->pkt_first > writes[w - 1].pkt_first);
    iovs += wr->iov_count;
    CHECK_EQ(wr->iov_count, wr->pkt_count);
    if (groups)
      groups[w] = wr->pkt_count;
    size_t len = gather(wr);
    struct virtio_net_hdr vh;
    memcpy(&vh, flat, sizeof vh);
    const uint8_t *ip = flat + MESHD_VNET_HDR_LEN;
    size_t iplen = len - MESHD_VNET_HDR_LEN;
    uint32_t first = wr->pkt_first;
    CHECK(iov[wr->iov_first].iov_base == b->buf[first]);
    if (wr->pkt_count > 1) {
      n_super_writes++;
      n_super_pkts += wr->pkt_count;
    } else {
      n_single++;
    }
    if (wr->pkt_count == 1) {
      static const struct virtio_net_hdr zero;
      CHECK(memcmp(&vh, &zero, sizeof vh) == 0);
      CHECK_EQ(iplen, b->pkts[first].len);
      CHECK(memcmp(ip, b->orig[first], iplen) == 0);
      CHECK(!seen[first]);
      seen[first] = true;
      order[pkts++] = first;
      continue;
    }
    CHECK(kernel_accepts_gso(&vh, ip, iplen));
    CHECK_EQ(vh.gso_type & VIRTIO_NET_HDR_GSO_ECN, 0);
    CHECK(iplen <= MESHD_GRO_MAX_IP_LEN);
    int r = meshd_offload_split(&vh, ip, iplen, seg_out, STRIDE, MAXSEG, seg_lens);
    CHECK_EQ(r, wr->pkt_count);
    if (r != (int)wr->pkt_count)
      continue;
    /* Match the resegmented packets to the batch packets the write holds, via iov bases. */
    size_t hl = vh.hdr_len;
    for (int s = 0; s < r; s++) {
      uint32_t j = first;
      if (s > 0) {
        const uint8_t *base = iov[wr->iov_first + s].iov_base;
        for (j = 0; j < b->n && b->pkts[j].data + hl != base; j++)
          ;
        CHECK(j < b->n);
        if (j >= b->n)
          break;
        CHECK(j > order[pkts - 1]);
        CHECK(memcmp(b->pkts[j].data, b->orig[j], b->pkts[j].len) == 0); /* untouched */
      }
      CHECK(!seen[j]);
      seen[j] = true;
      order[pkts++] = j;
      const uint8_t *seg = seg_out + (size_t)s * STRIDE, *o = b->orig[j];
      CHECK_EQ(seg_lens[s], b->pkts[j].len);
      if (seg_lens[s] != b->pkts[j].len)
        continue;
      size_t iph = vh.csum_start;
      if (ip[0] >> 4 == 4) {
        CHECK(ref_ip4_ok(seg));
        /* With DF the ID may differ (RFC 6864); without DF it must not. */
        bool df = get16(o + 6) & 0x4000;
        CHECK(memcmp(seg, o, 4) == 0 && memcmp(seg + 6, o + 6, 4) == 0 &&
              memcmp(seg + 12, o + 12, iph - 12) == 0);
        if (!df)
          CHECK(memcmp(seg + 4, o + 4, 2) == 0);
      } else {
        CHECK(memcmp(seg, o, 40) == 0);
      }
      CHECK(ref_l4_ok(seg, seg_lens[s], iph, 6));
      /* TCP header but the checksum (both valid) and urgent pointer (URG is never set). */
      CHECK(memcmp(seg + iph, o + iph, 16) == 0);
      CHECK(memcmp(seg + iph + 20, o + iph + 20, seg_lens[s] - iph - 20) == 0);
    }
  }
  CHECK_EQ(iovs, b->n);
  CHECK_EQ(pkts, b->n);
  /* Per flow, the write order keeps batch order. */
  for (size_t a = 0; a < pkts; a++) {
    uint8_t ka[37], kb[37];
    if (!tcp_key(b->orig[order[a]], b->pkts[order[a]].len, ka))
      continue;
    for (size_t c = a + 1; c < pkts; c++)
      if (tcp_key(b->orig[order[c]], b->pkts[order[c]].len, kb) && memcmp(ka, kb, 37) == 0)
        CHECK(order[c] > order[a]);
  }
  /* Only headroom and coalesced first packets' headers may have changed. */
  for (size_t i = 0; i < b->n; i++) {
    bool is_first = false;
    for (int w = 0; w < nw; w++)
      is_first |= writes[w].pkt_first == i && writes[w].pkt_count > 1;
    if (!is_first)
      CHECK(memcmp(b->pkts[i].data, b->orig[i], b->pkts[i].len) == 0);
  }
  return nw;
}

static void expect_groups(struct batch *b, const uint32_t *want, int nwant, const char *what)
{
  uint32_t got[MESHD_GRO_BATCH_MAX];
  int nw = coalesce_check(b, got);
  bool ok = nw == nwant;
  for (int i = 0; ok && i < nw; i++)
    ok = got[i] == want[i];
  if (!ok) {
    fprintf(stderr, "%s: groups", what);
    for (int i = 0; i < nw; i++)
      fprintf(stderr, " %u", got[i]);
    fprintf(stderr, ", want");
    for (int i = 0; i < nwant; i++)
      fprintf(stderr, " %u", want[i]);
    fprintf(stderr, "\n");
    failures++;
  }
  batch_free(b);
}
#define GROUPS(b, what, ...)                                                      \
  do {                                                                            \
    const uint32_t want_[] = {__VA_ARGS__};                                \
    expect_groups((b), want_, (int)(sizeof want_ / sizeof want_[0]), (what));     \
  } while (0)

/* ---- coalesce tests ---- */

static void test_round_trip(void)
{
  static uint8_t pkt[70000];
  for (int v6 = 0; v6 <= 1; v6++) {
    struct flow f;
    flow_init(&f, v6, 5);
    size_t hl = hdr_len_of(&f), n = 65535 - hl;
    struct virtio_net_hdr vh;
    size_t len = build_super(&f, pkt, payload_src, n, 0x18, 1380, false, &vh);
    int r = meshd_offload_split(&vh, pkt, len, seg_out, STRIDE, MAXSEG, seg_lens);
    CHECK_EQ(r, (int)((n + 1379) / 1380));
    struct batch b = {0};
    for (int i = 0; i < r; i++)
      batch_add(&b, seg_out + (size_t)i * STRIDE, seg_lens[i]);
    int nw = meshd_offload_coalesce(&gro, b.pkts, b.n, iov, b.n, writes, b.n);
    CHECK_EQ(nw, 1);
    CHECK_EQ(writes[0].pkt_count, r);
    size_t flen = gather(&writes[0]);
    CHECK_EQ(flen, MESHD_VNET_HDR_LEN + len);
    struct virtio_net_hdr got;
    memcpy(&got, flat, sizeof got);
    CHECK_EQ(got.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
    CHECK_EQ(got.gso_type, v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4);
    CHECK_EQ(got.gso_size, 1380);
    CHECK_EQ(got.hdr_len, hl);
    CHECK_EQ(got.csum_start, v6 ? 40 : 20);
    CHECK_EQ(got.csum_offset, 16);
    /* The coalesced packet is the original super-packet, byte for byte: same headers, same
     * partial checksum, payload in order. */
    CHECK(memcmp(flat + MESHD_VNET_HDR_LEN, pkt, len) == 0);
    if (!v6)
      CHECK(ref_ip4_ok(flat + MESHD_VNET_HDR_LEN));
    batch_free(&b);

    /* And through the full invariant checker. */
    flow_init(&f, v6, 5);
    add_split(&b, &f, n, 1380, 0x18);
    GROUPS(&b, "round trip", (uint32_t)r);
  }
}

static void test_interleaved(void)
{
  struct batch b = {0}, sa = {0}, sb = {0};
  struct flow fa, fb;
  flow_init(&fa, false, 6);
  flow_init(&fb, true, 7);
  int na = add_split(&sa, &fa, 1380 * 10, 1380, 0x10);
  int nb = add_split(&sb, &fb, 1380 * 10 + 500, 1380, 0x18);
  uint8_t udp[128], icmp[84];
  memset(udp, 0, sizeof udp);
  udp[0] = 0x45;
  put16(udp + 2, sizeof udp);
  udp[8] = 64;
  udp[9] = 17;
  memset(icmp, 0, sizeof icmp);
  icmp[0] = 0x45;
  put16(icmp + 2, sizeof icmp);
  icmp[9] = 1;
  for (int i = 0; i < na || i < nb; i++) {
    if (i < na)
      batch_add(&b, sa.orig[i], sa.pkts[i].len);
    if (i == 4)
      batch_add(&b, udp, sizeof udp);
    if (i < nb)
      batch_add(&b, sb.orig[i], sb.pkts[i].len);
    if (i == 7)
      batch_add(&b, icmp, sizeof icmp);
  }
  batch_free(&sa);
  batch_free(&sb);
  GROUPS(&b, "interleaved", (uint32_t)na, (uint32_t)nb, 1, 1);
}

/* Builds 8 segments of one flow, lets `mut` alter segment `at` (rebuilding it), and checks
 * the resulting groups. */
typedef void (*mutator)(struct flow *f, uint8_t *flags, uint32_t *seq, uint16_t *id, size_t *n);

static void run_breaker(mutator mut, int at, bool v6, const uint32_t *want, int nwant,
                        const char *what)
{
  struct batch b = {0};
  struct flow f;
  flow_init(&f, v6, 8);
  uint8_t pkt[2000];
  uint32_t seq = f.seq;
  for (int i = 0; i < 8; i++) {
    struct flow g = f;
    uint8_t flags = 0x10;
    uint32_t s = seq;
    uint16_t id = (uint16_t)(f.ip_id + i);
    size_t n = 1000;
    if (i == at)
      mut(&g, &flags, &s, &id, &n);
    size_t len = build_segment(&g, pkt, payload_src + i * 1000, n, flags, s, id);
    batch_add(&b, pkt, len);
    seq += 1000;
  }
  expect_groups(&b, want, nwant, what);
}

static void m_ack(struct flow *f, uint8_t *fl, uint32_t *s, uint16_t *id, size_t *n)
{
  (void)fl, (void)s, (void)id, (void)n;
  f->ack += 1000;
}
static void m_gap(struct flow *f, uint8_t *fl, uint32_t *s, uint16_t *id, size_t *n)
{
  (void)f, (void)fl, (void)id, (void)n;
  *s += 1;
}
static void m_syn(struct flow *f, uint8_t *fl, uint32_t *s, uint16_t *id, size_t *n)
{
  (void)f, (void)s, (void)id, (void)n;
  *fl |= 0x02;
}
static void m_psh(struct flow *f, uint8_t *fl, uint32_t *s, uint16_t *id, size_t *n)
{
  (void)f, (void)s, (void)id, (void)n;
  *fl |= 0x08;
}
static void m_fin(struct flow *f, uint8_t *fl, uint32_t *s, uint16_t *id, size_t *n)
{
  (void)f, (void)s, (void)id, (void)n;
  *fl |= 0x01;
}
static void m_cwr(struct flow *f, uint8_t *fl, uint32_t *s, uint16_t *id, size_t *n)
{
  (void)f, (void)s, (void)id, (void)n;
  *fl |= 0x80;
}
static void m_short(struct flow *f, uint8_t *fl, uint32_t *s, uint16_t *id, size_t *n)
{
  (void)f, (void)fl, (void)s, (void)id;
  *n = 999;
}
static void m_win(struct flow *f, uint8_t *fl, uint32_t *s, uint16_t *id, size_t *n)
{
  (void)fl, (void)s, (void)id, (void)n;
  f->win++;
}
static void m_ttl(struct flow *f, uint8_t *fl, uint32_t *s, uint16_t *id, size_t *n)
{
  (void)fl, (void)s, (void)id, (void)n;
  f->ttl--;
}
static void m_tos(struct flow *f, uint8_t *fl, uint32_t *s, uint16_t *id, size_t *n)
{
  (void)fl, (void)s, (void)id, (void)n;
  f->tos = 3; /* ECN CE */
}
static void m_id(struct flow *f, uint8_t *fl, uint32_t *s, uint16_t *id, size_t *n)
{
  (void)f, (void)fl, (void)s, (void)n;
  *id += 100;
}
static void m_nodf_id(struct flow *f, uint8_t *fl, uint32_t *s, uint16_t *id, size_t *n)
{
  (void)fl, (void)s, (void)n;
  f->df = false;
  *id += 100;
}
static void m_tsval(struct flow *f, uint8_t *fl, uint32_t *s, uint16_t *id, size_t *n)
{
  (void)fl, (void)s, (void)id, (void)n;
  f->tsval++; /* options differ (tcp_gro_receive() compares them) */
}
static void m_none(struct flow *f, uint8_t *fl, uint32_t *s, uint16_t *id, size_t *n)
{
  (void)f, (void)fl, (void)s, (void)id, (void)n;
}

static void test_breakers(void)
{
#define BREAK(mut, at, v6, what, ...)                                                     \
  do {                                                                                    \
    const uint32_t w_[] = {__VA_ARGS__};                                                  \
    run_breaker(mut, at, v6, w_, (int)(sizeof w_ / sizeof w_[0]), what);                  \
  } while (0)
  for (int v6 = 0; v6 <= 1; v6++) {
    BREAK(m_none, -1, v6, "baseline", 8);
    BREAK(m_ack, 3, v6, "mismatched ACK", 3, 1, 4);
    BREAK(m_gap, 3, v6, "seq gap", 3, 1, 4);
    BREAK(m_syn, 3, v6, "SYN", 3, 1, 4);
    BREAK(m_cwr, 3, v6, "CWR", 3, 1, 4);
    BREAK(m_psh, 3, v6, "PSH in the middle", 4, 4);
    BREAK(m_fin, 7, v6, "FIN on the last", 8);
    BREAK(m_psh, 7, v6, "PSH on the last", 8);
    BREAK(m_short, 3, v6, "short segment in the middle", 4, 4);
    BREAK(m_short, 7, v6, "short last segment", 8);
    BREAK(m_win, 3, v6, "window change", 3, 1, 4);
    BREAK(m_ttl, 3, v6, "TTL/hop limit change", 3, 1, 4);
    BREAK(m_tos, 3, v6, "TOS/traffic class change", 3, 1, 4);
    BREAK(m_tsval, 3, v6, "TCP options change", 3, 1, 4);
  }
  /* Flags that never coalesce, even when every segment carries them. */
  static const uint8_t never[] = {0x12 /* SYN */, 0x14 /* RST */, 0x30 /* URG */, 0x90 /* CWR */,
                                  0x00 /* no ACK */};
  for (size_t k = 0; k < sizeof never; k++) {
    struct batch b = {0};
    struct flow f;
    flow_init(&f, k & 1, 13);
    uint8_t pkt[2000];
    for (int i = 0; i < 4; i++) {
      size_t len = build_segment(&f, pkt, payload_src, 1000, never[k], f.seq + (uint32_t)i * 1000,
                                 (uint16_t)(f.ip_id + i));
      batch_add(&b, pkt, len);
    }
    GROUPS(&b, "flags that never coalesce", 1, 1, 1, 1);
  }
  BREAK(m_id, 3, false, "DF set: ID jump is fine", 8);
  BREAK(m_nodf_id, 3, false, "DF clear on one segment", 3, 1, 4);

  /* DF clear everywhere with consecutive IDs coalesces; an ID jump splits. */
  for (int jump = 0; jump <= 1; jump++) {
    struct batch b = {0};
    struct flow f;
    flow_init(&f, false, 9);
    f.df = false;
    uint8_t pkt[2000];
    for (int i = 0; i < 6; i++) {
      uint16_t id = (uint16_t)(f.ip_id + i + (jump && i >= 2 ? 5 : 0));
      size_t len = build_segment(&f, pkt, payload_src, 1000, 0x10, f.seq + (uint32_t)i * 1000, id);
      batch_add(&b, pkt, len);
    }
    if (jump)
      GROUPS(&b, "DF clear, ID jump", 2, 4);
    else
      GROUPS(&b, "DF clear, consecutive IDs", 6);
  }

  /* A bad TCP checksum in the middle: that segment goes alone (the kernel will drop it). */
  for (int v6 = 0; v6 <= 1; v6++) {
    struct batch b = {0};
    struct flow f;
    flow_init(&f, v6, 10);
    add_split(&b, &f, 8000, 1000, 0x10);
    b.pkts[3].data[hdr_len_of(&f) + 10] ^= 1;
    b.orig[3][hdr_len_of(&f) + 10] ^= 1;
    GROUPS(&b, "bad TCP checksum", 3, 1, 4);
    /* ... and in the first segment. */
    flow_init(&f, v6, 10);
    add_split(&b, &f, 8000, 1000, 0x10);
    b.pkts[0].data[hdr_len_of(&f) + 10] ^= 1;
    b.orig[0][hdr_len_of(&f) + 10] ^= 1;
    GROUPS(&b, "bad TCP checksum first", 1, 7);
  }
  /* A bad IPv4 header checksum, IPv4 options, a pure ACK of the same flow. */
  {
    struct batch b = {0};
    struct flow f;
    flow_init(&f, false, 11);
    add_split(&b, &f, 8000, 1000, 0x10);
    b.pkts[5].data[10] ^= 0x40;
    b.orig[5][10] ^= 0x40;
    GROUPS(&b, "bad IPv4 header checksum", 5, 1, 2);

    flow_init(&f, false, 11);
    f.ip_opts = 4;
    add_split(&b, &f, 4000, 1000, 0x10);
    GROUPS(&b, "IPv4 options", 1, 1, 1, 1);

    flow_init(&f, false, 11);
    add_split(&b, &f, 3000, 1000, 0x10);
    uint8_t pkt[200];
    size_t len = build_segment(&f, pkt, payload_src, 0, 0x10, f.seq, f.ip_id);
    batch_add(&b, pkt, len);
    add_split(&b, &f, 3000, 1000, 0x10);
    GROUPS(&b, "pure ACK between data", 3, 1, 3);
  }
  /* Two flows differing only in a port, and the 64 KiB cap: 50 x 1380 splits at 47. */
  {
    struct batch b = {0};
    struct flow f, g;
    flow_init(&f, false, 12);
    g = f;
    g.dport++;
    add_split(&b, &f, 4000, 1000, 0x10);
    add_split(&b, &g, 4000, 1000, 0x10);
    GROUPS(&b, "port differs", 4, 4);

    flow_init(&f, false, 12);
    add_split(&b, &f, 1380 * 30, 1380, 0x10);
    add_split(&b, &f, 1380 * 20, 1380, 0x10);
    /* (65535 - 52) / 1380 = 47 segments fit. */
    GROUPS(&b, "64 KiB cap", 47, 3);
  }
  /* Edge inputs: empty batch, limits. */
  CHECK_EQ(meshd_offload_coalesce(&gro, NULL, 0, iov, 0, writes, 0), 0);
  meshd_pkt one = {flat + 16, 0};
  CHECK_EQ(meshd_offload_coalesce(&gro, &one, 1, iov, 0, writes, 1), -ENOSPC);
  CHECK_EQ(meshd_offload_coalesce(&gro, &one, 1, iov, 1, writes, 0), -ENOSPC);
  CHECK_EQ(meshd_offload_coalesce(&gro, &one, MESHD_GRO_BATCH_MAX + 1, iov, 1000, writes, 1000),
           -EINVAL);
  CHECK_EQ(meshd_offload_coalesce(&gro, &one, 1, iov, 1, writes, 1), 1);
#undef BREAK
}

/* ---- hostile inputs ---- */

static void fuzz_split(int iters)
{
  static uint8_t pkt[70000];
  static uint32_t lens[80];
  for (int it = 0; it < iters; it++) {
    struct virtio_net_hdr vh;
    size_t len;
    int kind = (int)rndn(4);
    if (kind == 0) { /* noise */
      len = rndn(200);
      rnd_fill(pkt, len);
      rnd_fill((uint8_t *)&vh, sizeof vh);
      if (rnd() & 1)
        vh.gso_type &= 0x85;
      if (rnd() & 1)
        vh.flags &= 3;
    } else { /* a valid super-packet or partial packet, then damaged */
      struct flow f;
      flow_init(&f, rnd() & 1, (uint8_t)rnd());
      f.opt_len = 4 * rndn(11);
      if (!f.v6 && (rnd() & 1))
        f.ip_opts = 4 * rndn(11);
      size_t n = rndn(65535 - hdr_len_of(&f) + 1);
      if (rnd() & 1)
        n = rndn(3000);
      len = build_super(&f, pkt, payload_src, n, (uint8_t)rnd(), (uint16_t)(1 + rndn(9000)),
                        rnd() & 1, &vh);
      if (kind == 2) { /* damage */
        int flips = 1 + (int)rndn(4);
        for (int k = 0; k < flips; k++)
          pkt[rndn(len < 120 ? len : 120)] ^= (uint8_t)(1u << rndn(8));
        if (rnd() & 1)
          ((uint8_t *)&vh)[rndn(sizeof vh)] ^= (uint8_t)(1u << rndn(8));
      }
      if (kind == 3) /* truncate */
        len = rndn(len + 1);
      if (rnd() % 8 == 0) { /* non-GSO with a partial checksum somewhere */
        vh.gso_type = 0;
        vh.csum_start = (uint16_t)rndn(len + 8);
        vh.csum_offset = (uint16_t)(2 * rndn(12));
      }
    }
    /* Exact-size copies: ASan flags any read past len or write past the output. */
    uint8_t *in = malloc(len ? len : 1);
    size_t stride = 64 + rndn(9000), max_segs = 1 + rndn(80);
    uint8_t *out = malloc(stride * max_segs);
    uint8_t *inplace = malloc(len ? len : 1);
    if (!in || !out || !inplace)
      abort();
    memcpy(in, pkt, len);
    memcpy(inplace, pkt, len);
    int r = meshd_offload_split(&vh, in, len, out, stride, max_segs, lens);
    CHECK(r == -EINVAL || r == -ENOSPC || (r >= 1 && (size_t)r <= max_segs));
    if (r == -EINVAL)
      n_einval++;
    else if (r == -ENOSPC)
      n_enospc++;
    else if (vh.gso_type)
      n_gso_ok++;
    else
      n_plain_ok++;
    int c = meshd_offload_complete_csum(&vh, inplace, len);
    CHECK(c == 0 || c == MESHD_OFFLOAD_NEEDS_SPLIT || c == -EINVAL);
    if (c == -EINVAL)
      CHECK_EQ(r, -EINVAL);
    if (c == 0 && r == 1)
      CHECK(memcmp(inplace, out, len) == 0);
    if (r >= 1) {
      CHECK_EQ(memcmp(in, pkt, len), 0); /* input untouched */
      for (int s = 0; s < r; s++)
        CHECK(lens[s] <= stride);
      if (vh.gso_type != 0) {
        size_t iph = out[0] >> 4 == 4 ? (size_t)(out[0] & 15) * 4 : 40;
        for (int s = 0; s < r; s++) {
          const uint8_t *seg = out + (size_t)s * stride;
          if (out[0] >> 4 == 4)
            CHECK(ref_ip4_ok(seg) && get16(seg + 2) == lens[s]);
          else
            CHECK(get16(seg + 4) + 40u == lens[s]);
          CHECK(ref_l4_ok(seg, lens[s], iph, 6));
        }
      } else if (vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
        /* The field held the pseudo-header sum; with it, the completed region verifies. */
        uint16_t pseudo = get16(pkt + vh.csum_start + vh.csum_offset);
        CHECK_EQ(ref_sum(out + vh.csum_start, len - vh.csum_start, pseudo), 0xffff);
      }
    }
    free(in);
    free(out);
    free(inplace);
  }
}

static void fuzz_coalesce(int iters)
{
  for (int it = 0; it < iters; it++) {
    struct batch b = {0};
    struct flow flows[4];
    int nflows = 1 + (int)rndn(4);
    for (int k = 0; k < nflows; k++) {
      flow_init(&flows[k], rnd() & 1, (uint8_t)k);
      flows[k].df = rnd() % 4 != 0;
      flows[k].opt_len = rnd() & 1 ? 12 : 0;
    }
    size_t want = 1 + rndn(MESHD_GRO_BATCH_MAX);
    uint8_t pkt[1600];
    while (b.n < want) {
      struct flow *f = &flows[rndn((size_t)nflows)];
      int kind = (int)rndn(10);
      size_t n = 1 + rndn(1200);
      if (kind < 6)
        n = 1200;
      uint8_t flags = 0x10;
      if (kind == 6)
        flags = (uint8_t)rnd();
      size_t len = build_segment(f, pkt, payload_src + rndn(4000), n, flags, f->seq, f->ip_id);
      if (kind == 7) /* damaged or truncated */
        pkt[rndn(len)] ^= (uint8_t)(1u << rndn(8));
      if (kind == 8)
        len = rndn(len + 1);
      if (kind == 9) { /* noise */
        len = rndn(200);
        rnd_fill(pkt, len);
        if (len)
          pkt[0] = (uint8_t)((rnd() & 1 ? 0x45 : 0x60) | (pkt[0] & 0x0f));
      }
      batch_add(&b, pkt, len);
      if (kind != 9 && rnd() % 8 != 0) { /* usually in order */
        f->seq += (uint32_t)n;
        f->ip_id++;
      }
    }
    coalesce_check(&b, NULL);
    batch_free(&b);
  }
}

/* ---- bench ---- */

static double now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void bench(void)
{
  static uint8_t pkt[70000];
  struct flow f;
  flow_init(&f, false, 1);
  f.opt_len = 0;
  size_t hl = hdr_len_of(&f), n = 65535 - hl;
  struct virtio_net_hdr vh;
  size_t len = build_super(&f, pkt, payload_src, n, 0x18, 1380, false, &vh);
  int segs = meshd_offload_split(&vh, pkt, len, seg_out, STRIDE, MAXSEG, seg_lens);
  const int reps = 20000;
  double t0 = now_ns();
  for (int i = 0; i < reps; i++)
    meshd_offload_split(&vh, pkt, len, seg_out, STRIDE, MAXSEG, seg_lens);
  double t1 = now_ns();
  printf("split: %zu-byte TCPv4 super-packet, MSS 1380 -> %d segments: %.1f ns/segment "
         "(%.2f us/super-packet, %.2f GB/s of payload)\n",
         len, segs, (t1 - t0) / reps / segs, (t1 - t0) / reps / 1000, (double)n * reps / (t1 - t0));

  /* Coalesce 44 segments back. The first packet's header is restored every round. */
  struct batch b = {0};
  for (int i = 0; i < 44; i++)
    batch_add(&b, seg_out + (size_t)i * STRIDE, seg_lens[i]);
  uint8_t saved[64];
  memcpy(saved, b.pkts[0].data, hl);
  int nw = meshd_offload_coalesce(&gro, b.pkts, b.n, iov, b.n, writes, b.n);
  t0 = now_ns();
  for (int i = 0; i < reps; i++) {
    memcpy(b.pkts[0].data, saved, hl);
    meshd_offload_coalesce(&gro, b.pkts, b.n, iov, b.n, writes, b.n);
  }
  t1 = now_ns();
  printf("coalesce: 44 x 1380-byte TCPv4 segments -> %d write(s) of %u segments: %.1f ns/segment "
         "(%.2f us/batch; includes verifying each segment's TCP checksum)\n",
         nw, writes[0].pkt_count, (t1 - t0) / reps / 44, (t1 - t0) / reps / 1000);

  static uint8_t buf[1400];
  rnd_fill(buf, sizeof buf);
  volatile uint16_t sink = 0;
  t0 = now_ns();
  for (int i = 0; i < reps * 50; i++)
    sink = (uint16_t)(sink + meshd_csum_partial(buf, sizeof buf, (uint16_t)i));
  t1 = now_ns();
  printf("checksum: 1400 bytes: %.1f ns (%.2f GB/s)\n", (t1 - t0) / (reps * 50.0),
         1400.0 * reps * 50 / (t1 - t0));
  batch_free(&b);
}

int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
    rnd_fill(payload_src, sizeof payload_src);
    bench();
    return 0;
  }
  int fuzz = argc > 1 ? atoi(argv[1]) : 20000;
  test_checksum();
  test_split_tso();
  test_split_plain();
  test_split_errors();
  test_round_trip();
  test_interleaved();
  test_breakers();
  fuzz_split(fuzz);
  printf("fuzz split: %d inputs: %ld GSO split, %ld plain, %ld -EINVAL, %ld -ENOSPC\n", fuzz,
         n_gso_ok, n_plain_ok, n_einval, n_enospc);
  n_super_writes = n_super_pkts = n_single = 0;
  fuzz_coalesce(fuzz / 10);
  printf("fuzz coalesce: %d batches: %ld super-packet writes of %ld packets, %ld single writes\n",
         fuzz / 10, n_super_writes, n_super_pkts, n_single);
  if (failures) {
    fprintf(stderr, "offload_test: %d check(s) failed\n", failures);
    return 1;
  }
  printf("offload_test: ok (fuzz: %d split inputs, %d coalesce batches)\n", fuzz, fuzz / 10);
  return 0;
}
