// sources: flowcache.c
/*
 * Standalone tests for flowcache.c; exits non-zero on the first failure.
 *   flowcache_test           the tests (also the 3-thread smoke test)
 *   flowcache_test --bench   ns/packet for the hit and miss paths (build with -O2 and no
 *                            sanitizers for meaningful numbers; nothing is asserted)
 * Deterministic: seeded PRNG, bounded loops, time passed in.
 */
#include "flowcache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures;
#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "%s:%d: %s: CHECK failed: %s\n", __FILE__, __LINE__, __func__, #cond); \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)
#define EQ(a, b)                                                                       \
  do {                                                                                 \
    long long a_ = (long long)(a), b_ = (long long)(b);                                \
    if (a_ != b_) {                                                                    \
      fprintf(stderr, "%s:%d: %s: %s == %lld, want %s == %lld\n", __FILE__, __LINE__, \
              __func__, #a, a_, #b, b_);                                               \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

/* ---- PRNG (xorshift64*) ---- */
static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 0x2545f4914f6cdd1dull;
}

/* ---- packet building ---- */
enum { TCP = 6, UDP = 17, ICMP4 = 1, ICMP6 = 58, GRE = 47, SCTP = 132 };
enum { FIN = 1, SYN = 2, RST = 4, PSH = 8, ACK = 16 };

typedef struct pkt {
  uint8_t b[512];
  size_t len;
} pkt;

/* Our address and the peer's; a third host (a router sending ICMP errors). */
static const uint8_t L4[4] = {10, 0, 0, 1}, R4[4] = {10, 0, 0, 2}, X4[4] = {192, 0, 2, 9};
static const uint8_t L6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
static const uint8_t R6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
static const uint8_t X6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9};

static void put16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

/* An IP packet from src to dst carrying l4[0..n) as protocol `proto`. */
static pkt ip(int v, uint8_t proto, const uint8_t *src, const uint8_t *dst, const uint8_t *l4, size_t n) {
  pkt p;
  memset(&p, 0, sizeof p);
  if (v == 4) {
    p.b[0] = 0x45;
    put16(p.b + 2, (unsigned)(20 + n));
    p.b[8] = 64;
    p.b[9] = proto;
    memcpy(p.b + 12, src, 4);
    memcpy(p.b + 16, dst, 4);
    memcpy(p.b + 20, l4, n);
    p.len = 20 + n;
  } else {
    p.b[0] = 0x60;
    put16(p.b + 4, (unsigned)n);
    p.b[6] = proto;
    p.b[7] = 64;
    memcpy(p.b + 8, src, 16);
    memcpy(p.b + 24, dst, 16);
    memcpy(p.b + 40, l4, n);
    p.len = 40 + n;
  }
  return p;
}

static const uint8_t *loc(int v) { return v == 4 ? L4 : L6; }
static const uint8_t *rem(int v) { return v == 4 ? R4 : R6; }

/* `out`: local -> remote; else remote -> local. */
static pkt tcp(int v, bool out, unsigned sport, unsigned dport, uint8_t flags) {
  uint8_t h[20] = {0};
  put16(h, sport);
  put16(h + 2, dport);
  h[12] = 5 << 4;
  h[13] = flags;
  return out ? ip(v, TCP, loc(v), rem(v), h, 20) : ip(v, TCP, rem(v), loc(v), h, 20);
}

static pkt udp(int v, bool out, unsigned sport, unsigned dport) {
  uint8_t h[12] = {0};
  put16(h, sport);
  put16(h + 2, dport);
  put16(h + 4, 12);
  return out ? ip(v, UDP, loc(v), rem(v), h, 12) : ip(v, UDP, rem(v), loc(v), h, 12);
}

/* Echo request (reply = false) or reply with identifier id. */
static pkt echo(int v, bool out, bool reply, unsigned id) {
  uint8_t h[16] = {0};
  h[0] = v == 4 ? (reply ? 0 : 8) : (reply ? 129 : 128);
  put16(h + 4, id);
  put16(h + 6, 1);
  uint8_t proto = v == 4 ? ICMP4 : ICMP6;
  return out ? ip(v, proto, loc(v), rem(v), h, 16) : ip(v, proto, rem(v), loc(v), h, 16);
}

static pkt other(int v, bool out, uint8_t proto) {
  uint8_t h[8] = {0};
  return out ? ip(v, proto, loc(v), rem(v), h, 8) : ip(v, proto, rem(v), loc(v), h, 8);
}

/* An ICMP error of `type`/`code` from `from` to us quoting the first `quote` bytes of q. */
static pkt icmp_error(int v, const uint8_t *from, uint8_t type, uint8_t code, const pkt *q, size_t quote) {
  uint8_t h[8 + 512] = {0};
  h[0] = type;
  h[1] = code;
  if (quote > q->len) quote = q->len;
  memcpy(h + 8, q->b, quote);
  return ip(v, v == 4 ? ICMP4 : ICMP6, from, loc(v), h, 8 + quote);
}

/* Exact-size heap copies, so that ASan sees any read past the end. */
static int out_(meshd_flowcache *fc, meshd_flowcache_hint *h, const pkt *p, size_t len, uint64_t now) {
  uint8_t *c = malloc(len ? len : 1);
  memcpy(c, p->b, len);
  int rc = meshd_flowcache_outbound(fc, h, c, len, now);
  free(c);
  return rc;
}
static int in_(meshd_flowcache *fc, meshd_flowcache_hint *h, const pkt *p, size_t len, uint64_t now) {
  uint8_t *c = malloc(len ? len : 1);
  memcpy(c, p->b, len);
  int rc = meshd_flowcache_inbound(fc, h, c, len, now);
  free(c);
  return rc;
}
static int admit_(meshd_flowcache *fc, const pkt *p, size_t len, uint64_t now, unsigned flags) {
  uint8_t *c = malloc(len ? len : 1);
  memcpy(c, p->b, len);
  int rc = meshd_flowcache_admit(fc, c, len, now, flags);
  free(c);
  return rc;
}
#define OUT(fc, p, now) out_((fc), NULL, &(p), (p).len, (now))
#define IN(fc, p, now) in_((fc), NULL, &(p), (p).len, (now))
#define ADMIT(fc, p, now) admit_((fc), &(p), (p).len, (now), 0)

static meshd_flowcache *mk(uint32_t max, uint32_t max_in) {
  meshd_flowcache *fc = meshd_flowcache_new(max, max_in, NULL, 0x1234567890abcdefull);
  CHECK(fc != NULL);
  return fc;
}

static meshd_flowcache_stats stats(meshd_flowcache *fc) {
  meshd_flowcache_stats s;
  meshd_flowcache_get_stats(fc, &s);
  return s;
}

/* ---- tests ---- */

static void test_new(void) {
  meshd_flowcache *fc = mk(0, 0);
  meshd_flowcache_stats s = stats(fc);
  EQ(s.capacity, 65536);
  EQ(s.inbound_capacity, 32768);
  EQ(s.flows, 0);
  meshd_flowcache_free(fc);
  fc = mk(1, 0);
  EQ(stats(fc).inbound_capacity, 1);
  meshd_flowcache_free(fc);
  CHECK(meshd_flowcache_new(8, 9, NULL, 1) == NULL);
  CHECK(meshd_flowcache_new(MESHD_FC_MAX_FLOWS_LIMIT + 1, 0, NULL, 1) == NULL);
  meshd_flowcache_free(NULL);
}

static void test_replies(int v) {
  meshd_flowcache *fc = mk(64, 0);
  /* TCP: our SYN opens the flow; the SYN-ACK and the rest pass; other tuples do not. */
  pkt syn = tcp(v, true, 40000, 22, SYN);
  EQ(OUT(fc, syn, 1), MESHD_FC_OUT_NEW);
  EQ(OUT(fc, syn, 2), MESHD_FC_OUT_KNOWN);
  pkt synack = tcp(v, false, 22, 40000, SYN | ACK);
  EQ(IN(fc, synack, 3), MESHD_FC_IN_REPLY);
  pkt wrong_port = tcp(v, false, 23, 40000, SYN | ACK);
  EQ(IN(fc, wrong_port, 3), MESHD_FC_IN_UNKNOWN);
  pkt unsolicited = tcp(v, false, 5555, 80, SYN);
  EQ(IN(fc, unsolicited, 3), MESHD_FC_IN_UNKNOWN);
  /* Their SYN to the port we connect from is no reply: it is the same tuple, reversed... */
  pkt same_tuple = tcp(v, false, 22, 40000, SYN);
  EQ(IN(fc, same_tuple, 3), MESHD_FC_IN_REPLY); /* as in JS: the key is the tuple alone */
  /* UDP */
  pkt q = udp(v, true, 5353, 53);
  EQ(OUT(fc, q, 4), MESHD_FC_OUT_NEW);
  pkt a = udp(v, false, 53, 5353);
  EQ(IN(fc, a, 5), MESHD_FC_IN_REPLY);
  pkt a2 = udp(v, false, 53, 5354);
  EQ(IN(fc, a2, 5), MESHD_FC_IN_UNKNOWN);
  /* The same ports over TCP are another flow. */
  pkt t53 = tcp(v, false, 53, 5353, ACK);
  EQ(IN(fc, t53, 5), MESHD_FC_IN_UNKNOWN);
  /* ICMP echo: our request's reply passes; their request with the same id does not. */
  pkt req = echo(v, true, false, 7);
  EQ(OUT(fc, req, 6), MESHD_FC_OUT_NEW);
  pkt rep = echo(v, false, true, 7);
  EQ(IN(fc, rep, 7), MESHD_FC_IN_REPLY);
  pkt their_req = echo(v, false, false, 7);
  EQ(IN(fc, their_req, 7), MESHD_FC_IN_UNKNOWN);
  pkt rep8 = echo(v, false, true, 8);
  EQ(IN(fc, rep8, 7), MESHD_FC_IN_UNKNOWN);
  /* Other protocols: by addresses alone. */
  pkt gre = other(v, true, GRE);
  EQ(OUT(fc, gre, 8), MESHD_FC_OUT_NEW);
  pkt gre_in = other(v, false, GRE);
  EQ(IN(fc, gre_in, 9), MESHD_FC_IN_REPLY);
  pkt ipip_in = other(v, false, 4);
  EQ(IN(fc, ipip_in, 9), MESHD_FC_IN_UNKNOWN);
  /* ICMP in the other family's IP is no control message: tracked by addresses. */
  pkt cross = other(v, true, v == 4 ? ICMP6 : ICMP4);
  EQ(OUT(fc, cross, 10), MESHD_FC_OUT_NEW);
  pkt cross_in = other(v, false, v == 4 ? ICMP6 : ICMP4);
  EQ(IN(fc, cross_in, 10), MESHD_FC_IN_REPLY);
  /* Informational ICMP opens nothing and goes to JS. */
  uint8_t info[8] = {v == 4 ? 13 : 135};
  pkt inf = ip(v, v == 4 ? ICMP4 : ICMP6, loc(v), rem(v), info, 8);
  EQ(OUT(fc, inf, 11), MESHD_FC_OUT_UNTRACKED);
  pkt inf_in = ip(v, v == 4 ? ICMP4 : ICMP6, rem(v), loc(v), info, 8);
  EQ(IN(fc, inf_in, 11), MESHD_FC_IN_UNKNOWN);
  /* SCTP has ports. */
  uint8_t sc[12] = {0, 9, 0, 10};
  pkt s_out = ip(v, SCTP, loc(v), rem(v), sc, 12);
  EQ(OUT(fc, s_out, 12), MESHD_FC_OUT_NEW);
  uint8_t sc_r[12] = {0, 10, 0, 9};
  pkt s_in = ip(v, SCTP, rem(v), loc(v), sc_r, 12);
  EQ(IN(fc, s_in, 12), MESHD_FC_IN_REPLY);
  uint8_t sc_x[12] = {0, 10, 0, 11};
  pkt s_x = ip(v, SCTP, rem(v), loc(v), sc_x, 12);
  EQ(IN(fc, s_x, 12), MESHD_FC_IN_UNKNOWN);
  /* Another remote address is another flow. */
  pkt from_x = v == 4 ? ip(4, UDP, X4, L4, a.b + 20, 12) : ip(6, UDP, X6, L6, a.b + 40, 12);
  EQ(IN(fc, from_x, 12), MESHD_FC_IN_UNKNOWN);
  meshd_flowcache_stats s = stats(fc);
  EQ(s.flows, 6);
  EQ(s.inbound_flows, 0);
  meshd_flowcache_free(fc);
}

static void test_admit_forget(int v) {
  meshd_flowcache *fc = mk(64, 0);
  pkt mine = tcp(v, true, 40000, 443, SYN);
  EQ(OUT(fc, mine, 1), MESHD_FC_OUT_NEW);
  pkt theirs = tcp(v, false, 50000, 22, SYN);
  EQ(IN(fc, theirs, 2), MESHD_FC_IN_UNKNOWN);
  EQ(ADMIT(fc, theirs, 2), MESHD_FC_ADMIT_ADDED);
  EQ(IN(fc, theirs, 3), MESHD_FC_IN_ADMITTED);
  EQ(ADMIT(fc, theirs, 3), MESHD_FC_ADMIT_UPDATED);
  /* Our reply refreshes their flow and does not make it ours. */
  pkt reply = tcp(v, true, 22, 50000, SYN | ACK);
  EQ(OUT(fc, reply, 4), MESHD_FC_OUT_KNOWN);
  pkt ping = echo(v, false, false, 99);
  EQ(ADMIT(fc, ping, 4), MESHD_FC_ADMIT_ADDED);
  pkt pong = echo(v, true, true, 99);
  EQ(OUT(fc, pong, 4), MESHD_FC_OUT_KNOWN);
  EQ(IN(fc, ping, 4), MESHD_FC_IN_ADMITTED);
  EQ(stats(fc).inbound_flows, 2);
  /* The policy changes: theirs go back to JS, ours stay. */
  meshd_flowcache_forget_inbound(fc);
  EQ(IN(fc, theirs, 5), MESHD_FC_IN_UNKNOWN);
  EQ(IN(fc, ping, 5), MESHD_FC_IN_UNKNOWN);
  pkt mine_reply = tcp(v, false, 443, 40000, ACK);
  EQ(IN(fc, mine_reply, 5), MESHD_FC_IN_REPLY);
  /* Our packets of their flow still do not turn it into ours (that would bypass JS). */
  EQ(OUT(fc, reply, 6), MESHD_FC_OUT_KNOWN);
  EQ(IN(fc, theirs, 6), MESHD_FC_IN_UNKNOWN);
  /* JS still allows it: back in C. */
  EQ(ADMIT(fc, theirs, 7), MESHD_FC_ADMIT_UPDATED);
  EQ(IN(fc, theirs, 7), MESHD_FC_IN_ADMITTED);
  EQ(IN(fc, ping, 7), MESHD_FC_IN_UNKNOWN);
  meshd_flowcache_stats s = stats(fc);
  EQ(s.flows, 3);
  EQ(s.inbound_flows, 2);
  EQ(s.generation, 1);
  /* JS says a flow we recorded as ours is theirs (this table had lost it): it becomes theirs,
   * not admitted (no packet of theirs was decided under this policy), so JS sees the next. */
  pkt lost = udp(v, true, 8080, 61000);
  EQ(OUT(fc, lost, 8), MESHD_FC_OUT_NEW);
  EQ(admit_(fc, &lost, lost.len, 8, MESHD_FC_ADMIT_SENT), MESHD_FC_ADMIT_UPDATED);
  pkt lost_in = udp(v, false, 61000, 8080);
  EQ(IN(fc, lost_in, 9), MESHD_FC_IN_UNKNOWN);
  EQ(OUT(fc, lost, 9), MESHD_FC_OUT_KNOWN);
  EQ(ADMIT(fc, lost_in, 9), MESHD_FC_ADMIT_UPDATED);
  EQ(IN(fc, lost_in, 9), MESHD_FC_IN_ADMITTED);
  /* SENT on a flow already admitted leaves it admitted; on a new one, adds it unadmitted. */
  EQ(admit_(fc, &lost, lost.len, 9, MESHD_FC_ADMIT_SENT), MESHD_FC_ADMIT_UPDATED);
  EQ(IN(fc, lost_in, 9), MESHD_FC_IN_ADMITTED);
  pkt fresh = udp(v, true, 8081, 61000), fresh_in = udp(v, false, 61000, 8081);
  EQ(admit_(fc, &fresh, fresh.len, 9, MESHD_FC_ADMIT_SENT), MESHD_FC_ADMIT_ADDED);
  EQ(IN(fc, fresh_in, 9), MESHD_FC_IN_UNKNOWN);
  EQ(OUT(fc, fresh, 9), MESHD_FC_OUT_KNOWN);
  meshd_flowcache_forget_inbound(fc);
  EQ(IN(fc, lost_in, 9), MESHD_FC_IN_UNKNOWN);
  /* And JS accepting a reply to a flow it has as ours records it as ours. */
  pkt r2 = udp(v, false, 53, 6000);
  EQ(admit_(fc, &r2, r2.len, 10, MESHD_FC_ADMIT_OURS), MESHD_FC_ADMIT_ADDED);
  meshd_flowcache_forget_inbound(fc);
  EQ(IN(fc, r2, 10), MESHD_FC_IN_REPLY);
  /* Nothing to track. */
  uint8_t frag[8] = {0};
  pkt f = ip(v, UDP, rem(v), loc(v), frag, 8);
  if (v == 4) put16(f.b + 6, 100);
  else {
    uint8_t fh[16] = {UDP, 0, 100 >> 5, (100 << 3) & 0xff};
    f = ip(6, 44, R6, L6, fh, 16);
  }
  EQ(ADMIT(fc, f, 11), MESHD_FC_ADMIT_UNTRACKED);
  pkt junk = f;
  junk.b[0] = 0x50;
  EQ(ADMIT(fc, junk, 11), MESHD_FC_MALFORMED);
  meshd_flowcache_free(fc);
}

static void test_clear(void) {
  meshd_flowcache *fc = mk(16, 0);
  pkt o = udp(4, true, 1, 2);
  EQ(OUT(fc, o, 1), MESHD_FC_OUT_NEW);
  pkt i = udp(4, false, 3, 4);
  EQ(ADMIT(fc, i, 1), MESHD_FC_ADMIT_ADDED);
  meshd_flowcache_clear(fc);
  EQ(stats(fc).flows, 0);
  EQ(stats(fc).inbound_flows, 0);
  pkt r = udp(4, false, 2, 1);
  EQ(IN(fc, r, 2), MESHD_FC_IN_UNKNOWN);
  EQ(OUT(fc, o, 2), MESHD_FC_OUT_NEW);
  meshd_flowcache_free(fc);
}

static void test_timeouts(int v) {
  meshd_flowcache *fc = mk(64, 0);
  const uint64_t T0 = 1000000;
  /* Idle past the timeout means more than it: at exactly the timeout the flow lives. */
  pkt syn = tcp(v, true, 40001, 80, SYN);
  pkt ack_in = tcp(v, false, 80, 40001, ACK);
  EQ(OUT(fc, syn, T0), MESHD_FC_OUT_NEW);
  EQ(IN(fc, ack_in, T0 + 300000), MESHD_FC_IN_REPLY);
  EQ(IN(fc, ack_in, T0 + 600001), MESHD_FC_IN_UNKNOWN);
  EQ(stats(fc).expired, 1);
  EQ(stats(fc).flows, 0);
  /* UDP 60 s, ICMP 30 s, other 60 s; each packet either way refreshes. */
  pkt u = udp(v, true, 1000, 2000), u_in = udp(v, false, 2000, 1000);
  EQ(OUT(fc, u, T0), MESHD_FC_OUT_NEW);
  EQ(IN(fc, u_in, T0 + 60000), MESHD_FC_IN_REPLY);
  EQ(OUT(fc, u, T0 + 120000), MESHD_FC_OUT_KNOWN);
  EQ(IN(fc, u_in, T0 + 180001), MESHD_FC_IN_UNKNOWN);
  pkt e = echo(v, true, false, 5), e_in = echo(v, false, true, 5);
  EQ(OUT(fc, e, T0), MESHD_FC_OUT_NEW);
  EQ(IN(fc, e_in, T0 + 30000), MESHD_FC_IN_REPLY);
  EQ(IN(fc, e_in, T0 + 60001), MESHD_FC_IN_UNKNOWN);
  pkt g = other(v, true, GRE), g_in = other(v, false, GRE);
  EQ(OUT(fc, g, T0), MESHD_FC_OUT_NEW);
  EQ(IN(fc, g_in, T0 + 60000), MESHD_FC_IN_REPLY);
  EQ(IN(fc, g_in, T0 + 120001), MESHD_FC_IN_UNKNOWN);
  /* An expired flow of ours is new again. */
  EQ(OUT(fc, g, T0 + 120002), MESHD_FC_OUT_NEW);

  /* TCP closing: a FIN each way -> 30 s. */
  pkt s2 = tcp(v, true, 40002, 80, SYN), fin_out = tcp(v, true, 40002, 80, FIN | ACK);
  pkt fin_in = tcp(v, false, 80, 40002, FIN | ACK), ack2 = tcp(v, false, 80, 40002, ACK);
  EQ(OUT(fc, s2, T0), MESHD_FC_OUT_NEW);
  EQ(OUT(fc, fin_out, T0 + 1), MESHD_FC_OUT_KNOWN);
  /* One FIN only: still the 5-minute timeout. */
  EQ(IN(fc, ack2, T0 + 30002), MESHD_FC_IN_REPLY);
  EQ(IN(fc, fin_in, T0 + 30003), MESHD_FC_IN_REPLY);
  EQ(IN(fc, ack2, T0 + 60003), MESHD_FC_IN_REPLY);
  EQ(IN(fc, ack2, T0 + 90004), MESHD_FC_IN_UNKNOWN);
  /* RST alone -> 30 s. */
  pkt s3 = tcp(v, true, 40003, 80, SYN), rst_in = tcp(v, false, 80, 40003, RST);
  pkt ack3 = tcp(v, false, 80, 40003, ACK);
  EQ(OUT(fc, s3, T0), MESHD_FC_OUT_NEW);
  EQ(IN(fc, rst_in, T0 + 1), MESHD_FC_IN_REPLY);
  EQ(IN(fc, ack3, T0 + 30002), MESHD_FC_IN_UNKNOWN);
  /* A bare SYN reopens a reused tuple: the closing state goes. */
  pkt s4 = tcp(v, true, 40004, 80, SYN), rst4 = tcp(v, true, 40004, 80, RST);
  pkt ack4 = tcp(v, false, 80, 40004, ACK);
  EQ(OUT(fc, s4, T0), MESHD_FC_OUT_NEW);
  EQ(OUT(fc, rst4, T0 + 1), MESHD_FC_OUT_KNOWN);
  EQ(OUT(fc, s4, T0 + 2), MESHD_FC_OUT_KNOWN);
  EQ(IN(fc, ack4, T0 + 30003), MESHD_FC_IN_REPLY);
  /* A SYN-ACK does not reopen. */
  pkt s5 = tcp(v, true, 40005, 80, SYN), rst5 = tcp(v, false, 80, 40005, RST);
  pkt sa5 = tcp(v, true, 40005, 80, SYN | ACK), ack5 = tcp(v, false, 80, 40005, ACK);
  EQ(OUT(fc, s5, T0), MESHD_FC_OUT_NEW);
  EQ(IN(fc, rst5, T0 + 1), MESHD_FC_IN_REPLY);
  EQ(OUT(fc, sa5, T0 + 2), MESHD_FC_OUT_KNOWN);
  EQ(IN(fc, ack5, T0 + 30003), MESHD_FC_IN_UNKNOWN);
  /* Admitted flows time out too, and their FINs count the same way. */
  pkt t6 = tcp(v, false, 50006, 22, SYN), fin6_in = tcp(v, false, 50006, 22, FIN | ACK);
  pkt fin6_out = tcp(v, true, 22, 50006, FIN | ACK);
  EQ(ADMIT(fc, t6, T0), MESHD_FC_ADMIT_ADDED);
  EQ(IN(fc, fin6_in, T0 + 1), MESHD_FC_IN_ADMITTED);
  EQ(OUT(fc, fin6_out, T0 + 2), MESHD_FC_OUT_KNOWN);
  EQ(IN(fc, t6, T0 + 30003), MESHD_FC_IN_UNKNOWN);
  meshd_flowcache_free(fc);

  /* Custom timeouts. */
  meshd_flowcache_timeouts to = {10, 5, 20, 30, 40};
  fc = meshd_flowcache_new(8, 0, &to, 7);
  CHECK(fc != NULL);
  pkt uu = udp(v, true, 1, 2), uu_in = udp(v, false, 2, 1);
  EQ(OUT(fc, uu, 100), MESHD_FC_OUT_NEW);
  EQ(IN(fc, uu_in, 120), MESHD_FC_IN_REPLY);
  EQ(IN(fc, uu_in, 141), MESHD_FC_IN_UNKNOWN);
  pkt tt = tcp(v, true, 1, 2, ACK), tt_in = tcp(v, false, 2, 1, ACK);
  EQ(OUT(fc, tt, 100), MESHD_FC_OUT_NEW);
  EQ(IN(fc, tt_in, 110), MESHD_FC_IN_REPLY);
  EQ(IN(fc, tt_in, 121), MESHD_FC_IN_UNKNOWN);
  meshd_flowcache_free(fc);
}

static void test_lru(void) {
  /* Four entries (two may be theirs). */
  meshd_flowcache *fc = mk(4, 0);
  pkt f[6], r[6];
  for (int i = 0; i < 6; i++) {
    f[i] = udp(4, true, 1000 + i, 53);
    r[i] = udp(4, false, 53, 1000 + i);
  }
  for (int i = 0; i < 4; i++) EQ(OUT(fc, f[i], 10 + i), MESHD_FC_OUT_NEW);
  EQ(IN(fc, r[0], 20), MESHD_FC_IN_REPLY); /* 0 is now the most recent */
  EQ(OUT(fc, f[4], 21), MESHD_FC_OUT_NEW); /* evicts 1 */
  meshd_flowcache_stats s = stats(fc);
  EQ(s.evictions, 1);
  EQ(s.expired, 0);
  EQ(s.flows, 4);
  EQ(IN(fc, r[1], 22), MESHD_FC_IN_UNKNOWN);
  EQ(IN(fc, r[0], 22), MESHD_FC_IN_REPLY);
  EQ(IN(fc, r[2], 22), MESHD_FC_IN_REPLY);
  /* Idle at the cold end is reclaimed, not evicted: 3 last seen at 13. */
  EQ(OUT(fc, f[5], 13 + 60001), MESHD_FC_OUT_NEW);
  s = stats(fc);
  EQ(s.evictions, 1);
  EQ(s.expired, 1);
  EQ(s.flows, 4);
  meshd_flowcache_free(fc);

  /* Theirs evict their own LRU once they hold their share; ours stay. */
  fc = mk(8, 4);
  pkt o[8], oi[8], t[10];
  for (int i = 0; i < 8; i++) {
    o[i] = tcp(4, true, 2000 + i, 443, SYN);
    oi[i] = tcp(4, false, 443, 2000 + i, ACK);
    EQ(OUT(fc, o[i], 100 + i), MESHD_FC_OUT_NEW);
  }
  for (int i = 0; i < 10; i++) {
    t[i] = tcp(4, false, 3000 + i, 22, SYN);
    EQ(ADMIT(fc, t[i], 200 + i), MESHD_FC_ADMIT_ADDED);
  }
  s = stats(fc);
  EQ(s.flows, 8);
  EQ(s.inbound_flows, 4);
  EQ(s.evictions, 10); /* 4 of ours (the share theirs may take), then 6 of theirs */
  for (int i = 0; i < 4; i++) EQ(IN(fc, oi[i], 300), MESHD_FC_IN_UNKNOWN);
  for (int i = 4; i < 8; i++) EQ(IN(fc, oi[i], 300), MESHD_FC_IN_REPLY);
  for (int i = 0; i < 6; i++) EQ(IN(fc, t[i], 300), MESHD_FC_IN_UNKNOWN);
  for (int i = 6; i < 10; i++) EQ(IN(fc, t[i], 300), MESHD_FC_IN_ADMITTED);
  /* A flood of theirs now only churns their own share. */
  for (int i = 0; i < 1000; i++) {
    pkt x = udp(4, false, 10000 + (unsigned)i, 9);
    EQ(ADMIT(fc, x, 400 + (uint64_t)i), MESHD_FC_ADMIT_ADDED);
  }
  for (int i = 4; i < 8; i++) EQ(IN(fc, oi[i], 1500), MESHD_FC_IN_REPLY);
  EQ(stats(fc).inbound_flows, 4);
  /* Ours filling the table take back theirs' entries, LRU first across both lists. */
  for (int i = 0; i < 4; i++) EQ(OUT(fc, o[i], 1600 + i), MESHD_FC_OUT_NEW);
  s = stats(fc);
  EQ(s.inbound_flows, 0);
  EQ(s.flows, 8);
  /* Converting a flow to theirs keeps theirs to their share. */
  meshd_flowcache_free(fc);
  fc = mk(4, 1);
  pkt a = udp(4, false, 1, 2), b = udp(4, true, 3, 4);
  EQ(ADMIT(fc, a, 1), MESHD_FC_ADMIT_ADDED);
  EQ(OUT(fc, b, 2), MESHD_FC_OUT_NEW);
  EQ(admit_(fc, &b, b.len, 3, MESHD_FC_ADMIT_SENT), MESHD_FC_ADMIT_UPDATED);
  s = stats(fc);
  EQ(s.inbound_flows, 1);
  EQ(s.flows, 1);
  EQ(s.evictions, 1);
  meshd_flowcache_free(fc);
}

static void test_icmp_errors(int v) {
  meshd_flowcache *fc = mk(64, 0);
  const uint8_t *router = v == 4 ? X4 : X6;
  uint8_t unreach = v == 4 ? 3 : 1, too_big = v == 4 ? 3 : 2, exceeded = v == 4 ? 11 : 3;
  pkt q = udp(v, true, 5000, 53);
  EQ(OUT(fc, q, 1), MESHD_FC_OUT_NEW);
  size_t hdr = v == 4 ? 20 : 40;
  /* RFC 792 quotes the header and 8 bytes; RFC 4443 as much as fits. */
  pkt e = icmp_error(v, rem(v), unreach, 3, &q, hdr + 8);
  EQ(IN(fc, e, 2), MESHD_FC_IN_ICMP_ERROR);
  e = icmp_error(v, router, too_big, 4, &q, q.len);
  EQ(IN(fc, e, 2), MESHD_FC_IN_ICMP_ERROR);
  /* Only 4 bytes of the quoted UDP header are needed (ports). */
  e = icmp_error(v, router, exceeded, 0, &q, hdr + 4);
  EQ(IN(fc, e, 2), MESHD_FC_IN_ICMP_ERROR);
  e = icmp_error(v, router, exceeded, 0, &q, hdr + 3);
  EQ(IN(fc, e, 2), MESHD_FC_IN_UNKNOWN);
  /* Quoting a flow we do not track. */
  pkt q2 = udp(v, true, 5001, 53);
  e = icmp_error(v, router, unreach, 3, &q2, q2.len);
  EQ(IN(fc, e, 2), MESHD_FC_IN_UNKNOWN);
  /* Quoting a packet we did not send (its source is not the error's destination). */
  pkt q3 = udp(v, false, 53, 5000);
  e = icmp_error(v, router, unreach, 3, &q3, q3.len);
  EQ(IN(fc, e, 2), MESHD_FC_IN_UNKNOWN);
  /* Quoting the other family, a fragment, or another ICMP error. */
  pkt q4 = udp(v == 4 ? 6 : 4, true, 5000, 53);
  e = icmp_error(v, router, unreach, 3, &q4, q4.len);
  EQ(IN(fc, e, 2), MESHD_FC_IN_UNKNOWN);
  if (v == 4) {
    pkt qf = q;
    put16(qf.b + 6, 0x2000 | 0); /* MF, offset 0: a first fragment is fine */
    e = icmp_error(v, router, unreach, 3, &qf, qf.len);
    EQ(IN(fc, e, 2), MESHD_FC_IN_ICMP_ERROR);
    put16(qf.b + 6, 3);
    e = icmp_error(v, router, unreach, 3, &qf, qf.len);
    EQ(IN(fc, e, 2), MESHD_FC_IN_UNKNOWN);
  }
  pkt inner = icmp_error(v, rem(v), unreach, 3, &q, q.len);
  /* (an error we sent, quoted back at us) */
  pkt inner_out = v == 4 ? ip(4, ICMP4, L4, R4, inner.b + 20, inner.len - 20)
                         : ip(6, ICMP6, L6, R6, inner.b + 40, inner.len - 40);
  e = icmp_error(v, router, unreach, 3, &inner_out, inner_out.len);
  EQ(IN(fc, e, 2), MESHD_FC_IN_UNKNOWN);
  /* Echo (traceroute by ping): time exceeded about our request. */
  pkt ping = echo(v, true, false, 42);
  EQ(OUT(fc, ping, 3), MESHD_FC_OUT_NEW);
  e = icmp_error(v, router, exceeded, 0, &ping, hdr + 8);
  EQ(IN(fc, e, 3), MESHD_FC_IN_ICMP_ERROR);
  pkt ping43 = echo(v, true, false, 43);
  e = icmp_error(v, router, exceeded, 0, &ping43, hdr + 8);
  EQ(IN(fc, e, 3), MESHD_FC_IN_UNKNOWN);
  /* Quoted TCP needs 4 bytes; an error about a flow they started counts too (as in JS). */
  pkt t = tcp(v, false, 6000, 22, SYN);
  EQ(ADMIT(fc, t, 4), MESHD_FC_ADMIT_ADDED);
  pkt ours_of_theirs = tcp(v, true, 22, 6000, SYN | ACK);
  e = icmp_error(v, router, unreach, 1, &ours_of_theirs, hdr + 4);
  EQ(IN(fc, e, 4), MESHD_FC_IN_ICMP_ERROR);
  /* The error refreshes nothing: the flow still times out from its last packet. */
  for (int i = 0; i < 3; i++) {
    e = icmp_error(v, router, unreach, 3, &q, q.len);
    EQ(IN(fc, e, 50000 + (uint64_t)i), MESHD_FC_IN_ICMP_ERROR);
  }
  e = icmp_error(v, router, unreach, 3, &q, q.len);
  EQ(IN(fc, e, 60002), MESHD_FC_IN_UNKNOWN);
  /* A quote too short to hold an IP header: no flow, not malformed (the outer packet is fine). */
  e = icmp_error(v, router, unreach, 3, &q, 10);
  EQ(IN(fc, e, 60003), MESHD_FC_IN_UNKNOWN);
  /* ICMP errors open no flow. */
  EQ(OUT(fc, e, 60003), MESHD_FC_OUT_UNTRACKED);
  meshd_flowcache_free(fc);
}

static void test_fragments(void) {
  meshd_flowcache *fc = mk(64, 0);
  uint8_t body[16] = {0};
  /* IPv4: a non-first fragment passes (filter.ts: the first fragment was checked). */
  pkt f = ip(4, UDP, R4, L4, body, 16);
  put16(f.b + 6, 185);
  EQ(IN(fc, f, 1), MESHD_FC_IN_FRAGMENT);
  pkt fo = ip(4, UDP, L4, R4, body, 16);
  put16(fo.b + 6, 185);
  EQ(OUT(fc, fo, 1), MESHD_FC_OUT_UNTRACKED);
  /* RFC 1858: TCP at fragment offset 8 is refused. */
  pkt tf = ip(4, TCP, R4, L4, body, 16);
  put16(tf.b + 6, 1);
  EQ(IN(fc, tf, 1), MESHD_FC_MALFORMED);
  put16(tf.b + 6, 2);
  EQ(IN(fc, tf, 1), MESHD_FC_IN_FRAGMENT);
  /* A first fragment is parsed like a whole packet. */
  pkt q = udp(4, true, 7000, 7001);
  EQ(OUT(fc, q, 1), MESHD_FC_OUT_NEW);
  pkt a = udp(4, false, 7001, 7000);
  put16(a.b + 6, 0x2000);
  EQ(IN(fc, a, 1), MESHD_FC_IN_REPLY);
  /* IPv6: fragment header with a non-zero offset. */
  uint8_t fh[24] = {UDP, 0, 0x05, 0x01, 0, 0, 0, 1};
  pkt f6 = ip(6, 44, R6, L6, fh, 24);
  EQ(IN(fc, f6, 1), MESHD_FC_IN_FRAGMENT);
  /* Offset 0 (first fragment): parsed through to UDP. */
  pkt q6 = udp(6, true, 7000, 7001);
  EQ(OUT(fc, q6, 1), MESHD_FC_OUT_NEW);
  uint8_t fh0[8 + 12] = {UDP, 0, 0x00, 0x01, 0, 0, 0, 1, 0x1b, 0x59, 0x1b, 0x58, 0, 12};
  pkt a6 = ip(6, 44, R6, L6, fh0, 20);
  EQ(IN(fc, a6, 1), MESHD_FC_IN_REPLY);
  /* Behind other extension headers (hop-by-hop, then destination options). */
  uint8_t ext[8 + 8 + 8 + 12] = {60, 0, 1, 4, 0, 0, 0, 0, 44, 0, 1, 4, 0, 0, 0, 0, UDP, 0, 0, 1, 0, 0, 0, 2,
                                 0x1b, 0x59, 0x1b, 0x58, 0, 12};
  pkt a6e = ip(6, 0, R6, L6, ext, 36);
  EQ(IN(fc, a6e, 1), MESHD_FC_IN_REPLY);
  /* A routing header with segments left is refused; with none it is walked. */
  uint8_t rh[8 + 12] = {UDP, 0, 0, 1, 0, 0, 0, 0, 0x1b, 0x59, 0x1b, 0x58, 0, 12};
  pkt r6 = ip(6, 43, R6, L6, rh, 20);
  EQ(IN(fc, r6, 1), MESHD_FC_MALFORMED);
  rh[3] = 0;
  r6 = ip(6, 43, R6, L6, rh, 20);
  EQ(IN(fc, r6, 1), MESHD_FC_IN_REPLY);
  /* AH counts in 4-octet units minus 2: length 1 = 12 bytes. */
  uint8_t ah[12 + 12] = {UDP, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x1b, 0x59, 0x1b, 0x58, 0, 12};
  pkt ah6 = ip(6, 51, R6, L6, ah, 24);
  EQ(IN(fc, ah6, 1), MESHD_FC_IN_REPLY);
  /* Hop-by-hop anywhere but first, or nine extension headers, are refused. */
  uint8_t hbh2[16 + 12] = {0, 0, 1, 4, 0, 0, 0, 0, UDP, 0, 1, 4, 0, 0, 0, 0};
  pkt h2 = ip(6, 60, R6, L6, hbh2, 28);
  EQ(IN(fc, h2, 1), MESHD_FC_MALFORMED);
  uint8_t chain[9 * 8 + 12] = {0};
  for (int i = 0; i < 9; i++) chain[i * 8] = i < 8 ? 60 : UDP;
  pkt ch = ip(6, 60, R6, L6, chain, sizeof chain);
  EQ(IN(fc, ch, 1), MESHD_FC_MALFORMED);
  uint8_t chain8[8 * 8 + 12] = {0};
  for (int i = 0; i < 8; i++) chain8[i * 8] = i < 7 ? 60 : UDP;
  memcpy(chain8 + 64, (uint8_t[]){0x1b, 0x59, 0x1b, 0x58, 0, 12}, 6);
  pkt ch8 = ip(6, 60, R6, L6, chain8, sizeof chain8);
  EQ(IN(fc, ch8, 1), MESHD_FC_IN_REPLY);
  meshd_flowcache_free(fc);
}

static void test_malformed(void) {
  meshd_flowcache *fc = mk(64, 0);
  pkt valid[] = {tcp(4, false, 1, 2, ACK), tcp(6, false, 1, 2, ACK), udp(4, false, 1, 2),
                 udp(6, false, 1, 2),      echo(4, false, true, 1), echo(6, false, true, 1)};
  /* Every truncation of a valid packet is malformed (the IP length says more). */
  for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
    for (size_t n = 0; n < valid[i].len; n++) {
      EQ(in_(fc, NULL, &valid[i], n, 1), MESHD_FC_MALFORMED);
      EQ(out_(fc, NULL, &valid[i], n, 1), MESHD_FC_MALFORMED);
      EQ(admit_(fc, &valid[i], n, 1, 0), MESHD_FC_MALFORMED);
    }
    CHECK(in_(fc, NULL, &valid[i], valid[i].len, 1) >= 0);
  }
  /* Trailing bytes past the IP length are ignored, as in JS. */
  pkt longer = udp(4, true, 9, 10);
  EQ(out_(fc, NULL, &longer, longer.len + 5, 1), MESHD_FC_OUT_NEW);
  pkt p = udp(4, false, 1, 2);
  p.b[0] = 0x55;
  EQ(IN(fc, p, 1), MESHD_FC_MALFORMED); /* version 5 */
  p = udp(4, false, 1, 2);
  p.b[0] = 0x44;
  EQ(IN(fc, p, 1), MESHD_FC_MALFORMED); /* IHL 16 */
  p = udp(4, false, 1, 2);
  put16(p.b + 2, 19);
  EQ(IN(fc, p, 1), MESHD_FC_MALFORMED); /* total < IHL */
  p = tcp(4, false, 1, 2, ACK);
  p.b[32] = 4 << 4;
  EQ(IN(fc, p, 1), MESHD_FC_MALFORMED); /* TCP data offset 16 */
  p.b[32] = 6 << 4;
  EQ(IN(fc, p, 1), MESHD_FC_MALFORMED); /* data offset past the end */
  /* UDP header cut short inside a consistent IP packet. */
  uint8_t u6[6] = {0};
  pkt su = ip(4, UDP, R4, L4, u6, 6);
  EQ(IN(fc, su, 1), MESHD_FC_MALFORMED);
  uint8_t ic[7] = {0};
  pkt si = ip(4, ICMP4, R4, L4, ic, 7);
  EQ(IN(fc, si, 1), MESHD_FC_MALFORMED);
  uint8_t sc[11] = {0};
  pkt ss = ip(6, SCTP, R6, L6, sc, 11);
  EQ(IN(fc, ss, 1), MESHD_FC_MALFORMED);
  /* IPv4 options: no-ops and end are fine; source routes and bad lengths are not. */
  pkt o = udp(4, false, 1, 2);
  memmove(o.b + 24, o.b + 20, 12);
  o.b[0] = 0x46;
  put16(o.b + 2, 36);
  o.len = 36;
  memcpy(o.b + 20, (uint8_t[]){1, 1, 0, 0}, 4);
  EQ(IN(fc, o, 1), MESHD_FC_IN_UNKNOWN);
  memcpy(o.b + 20, (uint8_t[]){7, 4, 0, 0}, 4); /* record route, length 4 */
  EQ(IN(fc, o, 1), MESHD_FC_IN_UNKNOWN);
  memcpy(o.b + 20, (uint8_t[]){131, 4, 0, 0}, 4);
  EQ(IN(fc, o, 1), MESHD_FC_MALFORMED);
  memcpy(o.b + 20, (uint8_t[]){137, 4, 0, 0}, 4);
  EQ(IN(fc, o, 1), MESHD_FC_MALFORMED);
  memcpy(o.b + 20, (uint8_t[]){7, 5, 0, 0}, 4);
  EQ(IN(fc, o, 1), MESHD_FC_MALFORMED);
  memcpy(o.b + 20, (uint8_t[]){1, 1, 1, 7}, 4); /* a type with no room for its length */
  EQ(IN(fc, o, 1), MESHD_FC_MALFORMED);
  memcpy(o.b + 20, (uint8_t[]){7, 1, 0, 0}, 4);
  EQ(IN(fc, o, 1), MESHD_FC_MALFORMED);
  /* IPv6 payload length past the buffer; extension header past the end. */
  p = udp(6, false, 1, 2);
  put16(p.b + 4, 13);
  EQ(IN(fc, p, 1), MESHD_FC_MALFORMED);
  uint8_t dst_opts[8] = {UDP, 1};
  pkt d = ip(6, 60, R6, L6, dst_opts, 8);
  EQ(IN(fc, d, 1), MESHD_FC_MALFORMED);
  meshd_flowcache_free(fc);
}

/* Random and mutated packets: results stay in range, and ASan/UBSan see every read. */
static void test_fuzz(void) {
  meshd_flowcache *fc = mk(256, 0);
  meshd_flowcache_hint hint;
  meshd_flowcache_hint_init(&hint);
  pkt seeds[12];
  int ns = 0;
  for (int v = 4; v <= 6; v += 2) {
    seeds[ns++] = tcp(v, true, 1, 2, SYN);
    seeds[ns++] = udp(v, false, 3, 4);
    seeds[ns++] = echo(v, false, true, 5);
    pkt q = udp(v, true, 3, 4);
    seeds[ns++] = icmp_error(v, v == 4 ? X4 : X6, v == 4 ? 3 : 1, 0, &q, q.len);
    uint8_t fh[8 + 8] = {UDP, 0, 0, 1, 0, 0, 0, 1, 0, 3, 0, 4, 0, 8};
    seeds[ns++] = ip(v, v == 4 ? UDP : 44, rem(v), loc(v), fh + (v == 4 ? 8 : 0), v == 4 ? 8 : 16);
    uint8_t ext[16 + 20] = {60, 0, 0, 0, 0, 0, 0, 0, TCP, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2};
    ext[16 + 12] = 5 << 4;
    seeds[ns++] = ip(v, v == 4 ? TCP : 0, rem(v), loc(v), ext + (v == 4 ? 16 : 0), v == 4 ? 20 : 36);
  }
  long counts[3][8] = {{0}};
  for (int iter = 0; iter < 200000; iter++) {
    pkt p;
    size_t len;
    if (iter % 4 == 0) {
      /* Random bytes, with a plausible version nibble most of the time. */
      len = rnd() % 120;
      for (size_t i = 0; i < len; i++) p.b[i] = (uint8_t)rnd();
      if (len && rnd() % 4) p.b[0] = (uint8_t)((rnd() & 1 ? 0x40 : 0x60) | (p.b[0] & 0x0f));
    } else {
      /* A seed with a few bytes changed, maybe cut or extended, maybe lengths fixed up. */
      p = seeds[rnd() % (uint64_t)ns];
      len = p.len;
      int flips = 1 + (int)(rnd() % 4);
      for (int i = 0; i < flips; i++) {
        size_t at = rnd() % (len + 8);
        if (at < sizeof p.b) p.b[at] = (uint8_t)(rnd() % 3 ? rnd() : p.b[at] ^ (1u << (rnd() % 8)));
      }
      if (rnd() % 3 == 0) len = rnd() % (len + 16);
      if (rnd() % 2 && len >= 40) {
        if ((p.b[0] >> 4) == 4) put16(p.b + 2, (unsigned)len);
        else put16(p.b + 4, (unsigned)(len - 40));
      }
    }
    uint64_t now = (uint64_t)iter * 7;
    int a = out_(fc, iter & 1 ? &hint : NULL, &p, len, now);
    int b = in_(fc, iter & 2 ? &hint : NULL, &p, len, now);
    int c = admit_(fc, &p, len, now, (unsigned)(rnd() % 4));
    CHECK(a >= -1 && a <= 2);
    CHECK(b >= -1 && b <= 4);
    CHECK(c >= -1 && c <= 2);
    /* One reader: malformed for one is malformed for all. */
    CHECK((a < 0) == (b < 0) && (b < 0) == (c < 0));
    counts[0][a + 1]++;
    counts[1][b + 1]++;
    counts[2][c + 1]++;
    if (iter % 5000 == 0) meshd_flowcache_forget_inbound(fc);
    if (iter % 70001 == 0) meshd_flowcache_clear(fc);
  }
  /* The mutations reach every outcome. */
  for (int r = 0; r < 4; r++) CHECK(counts[0][r] > 0);
  for (int r = 0; r < 6; r++) CHECK(counts[1][r] > 0);
  for (int r = 0; r < 4; r++) CHECK(counts[2][r] > 0);
  meshd_flowcache_stats s = stats(fc);
  CHECK(s.flows <= 256 && s.inbound_flows <= 128);
  meshd_flowcache_free(fc);
}

/*
 * Hints change cost, not answers: two tables, one used through hints, fed the same random
 * packets of a few flows with time moving on (no capacity pressure, so LRU order is moot).
 */
static void test_hint_same_answers(void) {
  meshd_flowcache *plain = mk(1024, 0), *hinted = mk(1024, 0);
  meshd_flowcache_hint tx, rx;
  meshd_flowcache_hint_init(&tx);
  meshd_flowcache_hint_init(&rx);
  uint64_t now = 1000;
  static const uint8_t flags[] = {ACK, ACK, ACK, ACK | PSH, SYN, SYN | ACK, FIN | ACK, RST};
  for (int iter = 0; iter < 100000; iter++) {
    int v = rnd() & 1 ? 4 : 6;
    unsigned port = 1000 + (unsigned)(rnd() % 6);
    bool out = rnd() & 1;
    pkt p;
    switch (rnd() % 4) {
    case 0:
    case 1: {
      uint8_t f = flags[rnd() % 8];
      p = out ? tcp(v, true, port, 80, f) : tcp(v, false, 80, port, f);
      break;
    }
    case 2:
      p = out ? udp(v, true, port, 53) : udp(v, false, 53, port);
      break;
    default:
      p = echo(v, out, rnd() & 1, port);
    }
    now += rnd() % 256 == 0 ? rnd() % 40000 : rnd() % 3;
    int op = (int)(rnd() % 16);
    if (op == 0) {
      meshd_flowcache_forget_inbound(plain);
      meshd_flowcache_forget_inbound(hinted);
    } else if (op < 3 && !out) {
      EQ(ADMIT(hinted, p, now), ADMIT(plain, p, now));
    } else if (out) {
      EQ(out_(hinted, &tx, &p, p.len, now), OUT(plain, p, now));
    } else {
      EQ(in_(hinted, &rx, &p, p.len, now), IN(plain, p, now));
    }
  }
  if (getenv("FLOWCACHE_VERBOSE")) printf("hint hits: tx %lu rx %lu\n", (unsigned long)tx.hits, (unsigned long)rx.hits);
  CHECK(tx.hits > 1000 && rx.hits > 1000);
  meshd_flowcache_free(plain);
  meshd_flowcache_free(hinted);
}

/* ---- threads ---- */

typedef struct shared {
  meshd_flowcache *fc;
  _Atomic uint64_t now;
  _Atomic int stop;
  long n;
} shared;

static void *tx_thread(void *arg) {
  shared *sh = arg;
  meshd_flowcache_hint h;
  meshd_flowcache_hint_init(&h);
  uint64_t r = 1;
  for (long i = 0; i < sh->n; i++) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    unsigned port = 1000 + (unsigned)(r >> 33) % 512;
    pkt p = (r >> 20) & 1 ? tcp(4, true, port, 443, (r >> 21) & 7 ? ACK : FIN) : udp(6, true, port, 53);
    CHECK(meshd_flowcache_outbound(sh->fc, &h, p.b, p.len, atomic_load(&sh->now)) >= 0);
  }
  return NULL;
}

static void *rx_thread(void *arg) {
  shared *sh = arg;
  meshd_flowcache_hint h;
  meshd_flowcache_hint_init(&h);
  uint64_t r = 2;
  for (long i = 0; i < sh->n; i++) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    unsigned port = 1000 + (unsigned)(r >> 33) % 512;
    pkt p;
    switch ((r >> 20) % 4) {
    case 0:
      p = tcp(4, false, 443, port, ACK);
      break;
    case 1:
      p = udp(6, false, 53, port);
      break;
    case 2:
      p = tcp(4, false, port, 22, ACK);
      break;
    default: {
      pkt q = udp(6, true, port, 53);
      p = icmp_error(6, X6, 1, 0, &q, q.len);
    }
    }
    int rc = meshd_flowcache_inbound(sh->fc, &h, p.b, p.len, atomic_load(&sh->now));
    CHECK(rc >= 0 && rc <= 3);
  }
  return NULL;
}

static void *js_thread(void *arg) {
  shared *sh = arg;
  uint64_t r = 3;
  for (long i = 0; i < sh->n / 8; i++) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    unsigned port = 1000 + (unsigned)(r >> 33) % 512;
    pkt p = tcp(4, false, port, 22, ACK);
    CHECK(meshd_flowcache_admit(sh->fc, p.b, p.len, atomic_load(&sh->now), 0) >= 0);
    if (i % 1000 == 0) meshd_flowcache_forget_inbound(sh->fc);
    if (i % 9000 == 0) {
      meshd_flowcache_stats s;
      meshd_flowcache_get_stats(sh->fc, &s);
      CHECK(s.flows <= s.capacity && s.inbound_flows <= s.inbound_capacity);
    }
    atomic_fetch_add(&sh->now, 3);
  }
  return NULL;
}

static void test_threads(long n) {
  shared sh = {.fc = mk(256, 64), .now = 1, .n = n};
  pthread_t t[3];
  CHECK(pthread_create(&t[0], NULL, tx_thread, &sh) == 0);
  CHECK(pthread_create(&t[1], NULL, rx_thread, &sh) == 0);
  CHECK(pthread_create(&t[2], NULL, js_thread, &sh) == 0);
  for (int i = 0; i < 3; i++) CHECK(pthread_join(t[i], NULL) == 0);
  meshd_flowcache_stats s = stats(sh.fc);
  CHECK(s.flows <= 256 && s.inbound_flows <= 64);
  meshd_flowcache_free(sh.fc);
}

/* ---- bench ---- */

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile int sink;

#define BENCH(name, n, body)                                         \
  do {                                                               \
    double t0_ = now_ns();                                           \
    for (long i_ = 0; i_ < (n); i_++) {                              \
      body;                                                          \
    }                                                                \
    printf("%-44s %7.1f ns/packet\n", name, (now_ns() - t0_) / (double)(n)); \
  } while (0)

typedef struct bench_arg {
  meshd_flowcache *fc;
  pkt p;
  long n;
  bool out, hint;
  double ns;
} bench_arg;

static void *bench_thread(void *arg) {
  bench_arg *b = arg;
  meshd_flowcache_hint h;
  meshd_flowcache_hint_init(&h);
  int local_sink = 0;
  double t0 = now_ns();
  for (long i = 0; i < b->n; i++) {
    uint64_t now = 1000 + (uint64_t)(i >> 16); /* a ms per 65,536 packets */
    local_sink += b->out ? meshd_flowcache_outbound(b->fc, b->hint ? &h : NULL, b->p.b, b->p.len, now)
                  : meshd_flowcache_inbound(b->fc, b->hint ? &h : NULL, b->p.b, b->p.len, now);
  }
  b->ns = (now_ns() - t0) / (double)b->n;
  sink = local_sink;
  return NULL;
}

static void bench(void) {
  const long N = 5000000;
  meshd_flowcache *fc = mk(0, 0);
  meshd_flowcache_hint h;
  meshd_flowcache_hint_init(&h);
  /* Background: 30,000 flows of ours, 10,000 of theirs, so the table is not empty. */
  for (unsigned i = 0; i < 30000; i++) {
    pkt p = udp(4, true, 1024 + i % 30000, 53 + i / 30000);
    meshd_flowcache_outbound(fc, NULL, p.b, p.len, 1000);
  }
  for (unsigned i = 0; i < 10000; i++) {
    pkt p = tcp(6, false, 1024 + i, 22, SYN);
    meshd_flowcache_admit(fc, p.b, p.len, 1000, 0);
  }
  pkt out = tcp(4, true, 40000, 443, ACK), reply = tcp(4, false, 443, 40000, ACK);
  pkt out6 = tcp(6, true, 40000, 443, ACK), reply6 = tcp(6, false, 443, 40000, ACK);
  pkt miss = tcp(4, false, 5555, 80, SYN);
  pkt adm = tcp(6, false, 1500, 22, ACK);
  meshd_flowcache_outbound(fc, NULL, out.b, out.len, 1000);
  meshd_flowcache_outbound(fc, NULL, out6.b, out6.len, 1000);
#define T(i) (1000 + (uint64_t)((i) >> 16))
  BENCH("outbound known, v4 TCP, locked", N, sink = meshd_flowcache_outbound(fc, NULL, out.b, out.len, T(i_)));
  BENCH("outbound known, v4 TCP, hint", N, sink = meshd_flowcache_outbound(fc, &h, out.b, out.len, T(i_)));
  BENCH("outbound known, v6 TCP, hint", N, sink = meshd_flowcache_outbound(fc, &h, out6.b, out6.len, T(i_)));
  BENCH("inbound hit (reply), v4 TCP, locked", N, sink = meshd_flowcache_inbound(fc, NULL, reply.b, reply.len, T(i_)));
  BENCH("inbound hit (reply), v4 TCP, hint", N, sink = meshd_flowcache_inbound(fc, &h, reply.b, reply.len, T(i_)));
  BENCH("inbound hit (reply), v6 TCP, hint", N, sink = meshd_flowcache_inbound(fc, &h, reply6.b, reply6.len, T(i_)));
  BENCH("inbound hit (admitted), v6 TCP, hint", N, sink = meshd_flowcache_inbound(fc, &h, adm.b, adm.len, T(i_)));
  BENCH("inbound miss (unsolicited SYN), v4", N, sink = meshd_flowcache_inbound(fc, &h, miss.b, miss.len, T(i_)));
  /* Many flows round-robin: the hint misses, every packet takes the lock. */
  pkt many[1024];
  for (unsigned i = 0; i < 1024; i++) many[i] = udp(4, false, 53, 1024 + i * 29);
  BENCH("inbound hit, 1,024 flows round-robin", N, {
    const pkt *p = &many[i_ & 1023];
    sink = meshd_flowcache_inbound(fc, &h, p->b, p->len, T(i_));
  });
  pkt qerr = udp(4, true, 1024, 53);
  pkt err = icmp_error(4, X4, 3, 3, &qerr, 28);
  BENCH("inbound ICMP error about a tracked flow", N / 4, sink = meshd_flowcache_inbound(fc, &h, err.b, err.len, T(i_)));
  /* Two threads on one flow at once: TX outbound, RX its replies. */
  for (int hint = 0; hint <= 1; hint++) {
    bench_arg a = {fc, out, N, true, hint, 0}, b = {fc, reply, N, false, hint, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, bench_thread, &a);
    pthread_create(&tb, NULL, bench_thread, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    printf("%-44s %7.1f / %.1f ns/packet (TX / RX)\n",
           hint ? "2 threads, one flow, hint" : "2 threads, one flow, locked", a.ns, b.ns);
  }
  meshd_flowcache_free(fc);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
    bench();
    return 0;
  }
  test_new();
  for (int v = 4; v <= 6; v += 2) {
    test_replies(v);
    test_admit_forget(v);
    test_timeouts(v);
    test_icmp_errors(v);
  }
  test_clear();
  test_lru();
  test_fragments();
  test_malformed();
  test_fuzz();
  test_hint_same_answers();
  test_threads(200000);
  printf("flowcache_test: all passed\n");
  return failures;
}
