// sources: dp_core.c dp_tables.c dp_allowedips.c dp_events.c flowcache.c
// libs: -lcrypto -lpthread
/*
 * dp_core_test: standalone tests for the native datapath's pure parts (no Node, no I/O), run by
 * native/test/run.sh under -fsanitize=address,undefined. Exits non-zero on the first failure.
 *
 *   replay window   dp_replay_validate against the kernel selftest's sequence (selftest/counter.c)
 *                   and against a reference model (an exact set of accepted counters plus the
 *                   window rule) over random in-order, reordered, duplicated and far-jump runs
 *   padding         dp_padding against the kernel's calculate_skb_padding rule, written another way
 *   seal/open       the transport message layout and ciphertext against OpenSSL used directly
 *                   (RFC 8439 §2.8.2 checks that use of OpenSSL first); round trips; every single
 *                   flipped bit of ciphertext or tag, a wrong key or counter, short input: rejected
 *   inner length    dp_inner_length for good and bad IPv4/IPv6 headers, and against a reference
 *                   on random buffers allocated at their exact size (ASan sees any overread)
 *   allowed IPs     dp_allowedips_build/lookup against a brute-force longest-prefix search
 *
 * Deterministic: a fixed seed (argv[1] or DP_TEST_SEED to change it).
 */
#include "datapath.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* ---------------------------------------------------------------- replay window */

/* An exact set of accepted counters (open addressing; cleared per run). */
#define SET_BITS 17
typedef struct {
  uint64_t keys[1u << SET_BITS];
  uint8_t used[1u << SET_BITS];
  uint32_t n;
} u64set;

static uint32_t set_slot(const u64set *s, uint64_t k) {
  uint32_t mask = (1u << SET_BITS) - 1, i = (uint32_t)((k * 0x9e3779b97f4a7c15ull) >> (64 - SET_BITS));
  while (s->used[i] && s->keys[i] != k) i = (i + 1) & mask;
  return i;
}
static bool set_has(const u64set *s, uint64_t k) { return s->used[set_slot(s, k)]; }
static void set_add(u64set *s, uint64_t k) {
  uint32_t i = set_slot(s, k);
  if (!s->used[i]) {
    s->used[i] = 1;
    s->keys[i] = k;
    s->n++;
  }
}

/* The model: kernel counter_validate's rule stated directly. `top` is one more than the
 * greatest accepted counter (0: none). A counter is accepted iff it is below
 * REJECT_AFTER_MESSAGES, not accepted before, and not older than the window:
 * counter + 1 + COUNTER_WINDOW_SIZE >= top. */
typedef struct {
  u64set seen;
  uint64_t top;
} model;

static bool model_validate(model *m, uint64_t c) {
  if (c >= DP_REJECT_AFTER_MESSAGES) return false;
  if (c + 1 + DP_COUNTER_WINDOW < m->top) return false;
  if (set_has(&m->seen, c)) return false;
  set_add(&m->seen, c);
  if (c + 1 > m->top) m->top = c + 1;
  return true;
}

static void test_replay_selftest(void) {
  /* The kernel's selftest/counter.c sequence, with this implementation's constants. */
  dp_replay r;
  uint64_t i;
  int n = 0;
  const uint64_t LIM = DP_COUNTER_WINDOW + 1, REJ = DP_REJECT_AFTER_MESSAGES;
#define T(c, want)                                                                                     \
  do {                                                                                                 \
    bool got = dp_replay_validate(&r, (c));                                                            \
    n++;                                                                                               \
    CHECK(got == (want), "selftest step %d: counter %llu gave %d", n, (unsigned long long)(c), got); \
  } while (0)
  dp_replay_reset(&r);
  T(0, true);
  T(1, true);
  T(1, false);
  T(9, true);
  T(8, true);
  T(7, true);
  T(7, false);
  T(LIM, true);
  T(LIM - 1, true);
  T(LIM - 1, false);
  T(LIM - 2, true);
  T(2, true);
  T(2, false);
  T(LIM + 16, true);
  T(3, false);
  T(LIM + 16, false);
  T(LIM * 4, true);
  T(LIM * 4 - (LIM - 1), true);
  T(10, false);
  T(LIM * 4 - LIM, false);
  T(LIM * 4 - (LIM + 1), false);
  T(LIM * 4 - (LIM - 2), true);
  T(LIM * 4 + 1 - LIM, false);
  T(0, false);
  T(REJ, false);
  T(REJ - 1, true);
  T(REJ, false);
  T(REJ - 1, false);
  T(REJ - 2, true);
  T(REJ + 1, false);
  T(REJ + 2, false);
  T(REJ - 2, false);
  T(REJ - 3, true);
  T(0, false);

  dp_replay_reset(&r);
  for (i = 1; i <= DP_COUNTER_WINDOW; ++i) T(i, true);
  T(0, true);
  T(0, false);

  dp_replay_reset(&r);
  for (i = 2; i <= DP_COUNTER_WINDOW + 1; ++i) T(i, true);
  T(1, true);
  T(0, false);

  dp_replay_reset(&r);
  for (i = DP_COUNTER_WINDOW + 1; i-- > 0;) T(i, true);

  dp_replay_reset(&r);
  for (i = DP_COUNTER_WINDOW + 2; i-- > 1;) T(i, true);
  T(0, false);

  dp_replay_reset(&r);
  for (i = DP_COUNTER_WINDOW + 1; i-- > 1;) T(i, true);
  T(DP_COUNTER_WINDOW + 1, true);
  T(0, false);

  dp_replay_reset(&r);
  for (i = DP_COUNTER_WINDOW + 1; i-- > 1;) T(i, true);
  T(0, true);
  T(DP_COUNTER_WINDOW + 1, true);

  /* UINT64_MAX and friends never pass, on an empty or a full window. */
  dp_replay_reset(&r);
  T(UINT64_MAX, false);
  T(UINT64_MAX - 1, false);
  T(REJ, false);
#undef T
}

/* One random run of `steps` counters from a generator mixing the patterns. */
static model M;
static uint64_t replay_steps;

static void replay_run(int pattern, int steps) {
  dp_replay r;
  dp_replay_reset(&r);
  memset(&M, 0, sizeof M);
  uint64_t next = pattern == 4 ? DP_REJECT_AFTER_MESSAGES - 3 * DP_COUNTER_BITS_TOTAL : below(1000);
  uint64_t hist[64] = {0};
  for (int s = 0; s < steps; s++) {
    uint64_t c;
    uint64_t k = below(100);
    uint64_t top = M.top;
    switch (pattern) {
    case 0: /* in order, an occasional skip */
      c = next;
      next += k < 95 ? 1 : 1 + below(100);
      break;
    case 1: /* reordered near the head, and right at the window's edge */
      if (k < 60) {
        c = next++;
      } else if (k < 85) {
        c = top > 200 ? top - 1 - below(200) : below(200);
      } else if (k < 95) { /* the oldest counter the window takes is top - 1 - WINDOW */
        c = top >= DP_COUNTER_WINDOW + 5 ? top - 1 - DP_COUNTER_WINDOW - 4 + below(8) : below(8);
      } else {
        c = next + below(70);
        next = c + 1;
      }
      break;
    case 2: /* duplicates of recent counters */
      if (k < 50) c = next++;
      else c = hist[below(64)];
      break;
    case 3: /* far jumps forward (and back) */
      if (k < 70) c = next++;
      else if (k < 80) c = next += below(DP_COUNTER_BITS_TOTAL * 3);
      else if (k < 85) c = next += below(1ull << 40);
      else if (k < 90) c = top > DP_COUNTER_BITS_TOTAL * 2 ? top - below(DP_COUNTER_BITS_TOTAL * 2) : below(top + 1);
      else if (k < 92) c = rnd();
      else if (k < 94) c = DP_REJECT_AFTER_MESSAGES - 1 + below(4); /* at and past the limit */
      else c = hist[below(64)];
      if (next >= DP_REJECT_AFTER_MESSAGES - 100000) next = below(1000); /* stay in range mostly */
      break;
    default: /* pattern 4: walking into REJECT_AFTER_MESSAGES */
      if (k < 80) c = next++;
      else if (k < 90) c = top - below(DP_COUNTER_BITS_TOTAL + 64);
      else c = DP_REJECT_AFTER_MESSAGES - 2 + below(4);
      break;
    }
    hist[s & 63] = c;
    bool want = model_validate(&M, c);
    bool got = dp_replay_validate(&r, c);
    replay_steps++;
    CHECK(got == want, "pattern %d step %d: counter %llu (top %llu) gave %d, model %d", pattern, s, (unsigned long long)c,
          (unsigned long long)top, got, want);
    if (got != want) return;
    if (M.seen.n > (1u << SET_BITS) / 2) return; /* keep the set sparse */
  }
}

static void test_replay_random(void) {
  for (int run = 0; run < 40; run++) replay_run(run % 5, 15000);
}

/* ---------------------------------------------------------------- padding */

static size_t ref_padding(size_t len, uint32_t mtu) {
  /* Kernel calculate_skb_padding: a packet longer than the MTU is padded as len % mtu;
   * pad up to a multiple of 16 but never past the MTU; MTU 0: to 16 regardless. */
  size_t last = len, p;
  if (mtu != 0 && len > mtu) last = len % mtu;
  for (p = last; p % 16 != 0; p++)
    if (mtu != 0 && p >= mtu) break;
  return p - last;
}

static void test_padding(void) {
  static const uint32_t mtus[] = {1420, 1280, 1500, 0, 1, 15, 16, 17, 576, 1419, 1421, 9000, 65535};
  for (size_t m = 0; m < sizeof mtus / sizeof mtus[0]; m++) {
    for (size_t len = 0; len <= 3000; len++) {
      size_t got = dp_padding(len, mtus[m]), want = ref_padding(len, mtus[m]);
      CHECK(got == want, "dp_padding(%zu, %u) = %zu, want %zu", len, mtus[m], got, want);
      CHECK(got < 16, "dp_padding(%zu, %u) = %zu", len, mtus[m], got);
    }
  }
  /* Spot values for mtu 1420. */
  CHECK(dp_padding(0, 1420) == 0, "0");
  CHECK(dp_padding(1, 1420) == 15, "1");
  CHECK(dp_padding(16, 1420) == 0, "16");
  CHECK(dp_padding(1404, 1420) == 4, "1404");
  CHECK(dp_padding(1412, 1420) == 8, "1412 clamps to the MTU");
  CHECK(dp_padding(1419, 1420) == 1, "1419");
  CHECK(dp_padding(1420, 1420) == 0, "1420");
  CHECK(dp_padding(1421, 1420) == 15, "1421: 1 mod 1420");
  CHECK(dp_padding(2840, 1420) == 0, "2840");
  CHECK(dp_padding(5, 0) == 11, "mtu 0");
}

/* ---------------------------------------------------------------- seal / open */

static const uint8_t rfc_key[32] = {0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a,
                                    0x8b, 0x8c, 0x8d, 0x8e, 0x8f, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95,
                                    0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f};
static const uint8_t rfc_nonce[12] = {0x07, 0x00, 0x00, 0x00, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47};
static const uint8_t rfc_aad[12] = {0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7};
static const char rfc_pt[] = "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
                             "future, sunscreen would be it.";
static const uint8_t rfc_ct[114] = {
    0xd3, 0x1a, 0x8d, 0x34, 0x64, 0x8e, 0x60, 0xdb, 0x7b, 0x86, 0xaf, 0xbc, 0x53, 0xef, 0x7e, 0xc2, 0xa4, 0xad, 0xed,
    0x51, 0x29, 0x6e, 0x08, 0xfe, 0xa9, 0xe2, 0xb5, 0xa7, 0x36, 0xee, 0x62, 0xd6, 0x3d, 0xbe, 0xa4, 0x5e, 0x8c, 0xa9,
    0x67, 0x12, 0x82, 0xfa, 0xfb, 0x69, 0xda, 0x92, 0x72, 0x8b, 0x1a, 0x71, 0xde, 0x0a, 0x9e, 0x06, 0x0b, 0x29, 0x05,
    0xd6, 0xa5, 0xb6, 0x7e, 0xcd, 0x3b, 0x36, 0x92, 0xdd, 0xbd, 0x7f, 0x2d, 0x77, 0x8b, 0x8c, 0x98, 0x03, 0xae, 0xe3,
    0x28, 0x09, 0x1b, 0x58, 0xfa, 0xb3, 0x24, 0xe4, 0xfa, 0xd6, 0x75, 0x94, 0x55, 0x85, 0x80, 0x8b, 0x48, 0x31, 0xd7,
    0xbc, 0x3f, 0xf4, 0xde, 0xf0, 0x8e, 0x4b, 0x7a, 0x9d, 0xe5, 0x76, 0xd2, 0x65, 0x86, 0xce, 0xc6, 0x4b, 0x61, 0x16};
static const uint8_t rfc_tag[16] = {0x1a, 0xe1, 0x0b, 0x59, 0x4f, 0x09, 0xe2, 0x6a,
                                    0x7e, 0x90, 0x2e, 0xcb, 0xd0, 0x60, 0x06, 0x91};

/* ChaCha20-Poly1305 with OpenSSL directly: ct (len bytes) and tag. */
static bool ref_aead(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_len, const uint8_t *pt,
                     size_t len, uint8_t *ct, uint8_t tag[16]) {
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int n = 0;
  bool ok = c != NULL && EVP_EncryptInit_ex(c, EVP_chacha20_poly1305(), NULL, NULL, NULL) == 1 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) == 1 &&
            EVP_EncryptInit_ex(c, NULL, NULL, key, nonce) == 1 &&
            (aad_len == 0 || EVP_EncryptUpdate(c, NULL, &n, aad, (int)aad_len) == 1) &&
            (len == 0 || (EVP_EncryptUpdate(c, ct, &n, pt, (int)len) == 1 && (size_t)n == len)) &&
            EVP_EncryptFinal_ex(c, ct + len, &n) == 1 && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, tag) == 1;
  EVP_CIPHER_CTX_free(c);
  return ok;
}

static void test_rfc8439(void) {
  uint8_t ct[114], tag[16];
  CHECK(sizeof rfc_pt - 1 == 114, "plaintext length");
  CHECK(ref_aead(rfc_key, rfc_nonce, rfc_aad, sizeof rfc_aad, (const uint8_t *)rfc_pt, 114, ct, tag), "EVP failed");
  CHECK(memcmp(ct, rfc_ct, 114) == 0, "RFC 8439 2.8.2 ciphertext");
  CHECK(memcmp(tag, rfc_tag, 16) == 0, "RFC 8439 2.8.2 tag");
}

static void le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void check_seal_one(EVP_CIPHER_CTX *ctx, size_t len, uint32_t mtu, uint64_t counter, bool flip_all_bits) {
  dp_keypair kp, rx;
  memset(&kp, 0, sizeof kp);
  memset(&rx, 0, sizeof rx);
  rnd_bytes(kp.send_key, 32);
  rnd_bytes(kp.recv_key, 32);
  kp.remote_index = (uint32_t)rnd();
  memcpy(rx.recv_key, kp.send_key, 32);

  size_t pad = ref_padding(len, mtu), cap = DP_HEADER_LEN + len + 16 + DP_TAG_LEN;
  uint8_t *pt = malloc(len + 16), *msg = malloc(cap), *want = malloc(cap), *copy = malloc(cap);
  rnd_bytes(pt, len);
  memset(pt + len, 0, 16);
  rnd_bytes(msg, cap); /* garbage in the header and padding room: seal must overwrite it */
  memcpy(msg + DP_HEADER_LEN, pt, len);
  size_t n = dp_seal(ctx, &kp, counter, msg, len, mtu);
  size_t total = DP_HEADER_LEN + len + pad + DP_TAG_LEN;
  CHECK(n == total, "dp_seal(len %zu, mtu %u) returned %zu, want %zu", len, mtu, n, total);
  if (n != total) goto out;

  /* The expected message, built by hand: type 4, 3 zero bytes, receiver index LE, counter LE,
   * then ChaCha20-Poly1305 of plaintext || zero padding, nonce 0^4 || counter LE64, no AAD. */
  uint8_t nonce[12] = {0};
  le64(nonce + 4, counter);
  want[0] = 4;
  want[1] = want[2] = want[3] = 0;
  want[4] = (uint8_t)kp.remote_index;
  want[5] = (uint8_t)(kp.remote_index >> 8);
  want[6] = (uint8_t)(kp.remote_index >> 16);
  want[7] = (uint8_t)(kp.remote_index >> 24);
  le64(want + 8, counter);
  CHECK(ref_aead(kp.send_key, nonce, NULL, 0, pt, len + pad, want + DP_HEADER_LEN, want + DP_HEADER_LEN + len + pad),
        "reference EVP failed");
  CHECK(memcmp(msg, want, total) == 0, "sealed message differs from the reference (len %zu, mtu %u, counter %llu)", len, mtu,
        (unsigned long long)counter);

  /* Round trip. */
  memcpy(copy, msg, total);
  long got = dp_open(ctx, &rx, counter, copy, total);
  CHECK(got == (long)(len + pad), "dp_open returned %ld, want %zu", got, len + pad);
  if (got == (long)(len + pad)) CHECK(memcmp(copy + DP_HEADER_LEN, pt, len + pad) == 0, "dp_open plaintext differs");

  /* The wrong counter, the wrong key (our own send key), too short. */
  memcpy(copy, msg, total);
  CHECK(dp_open(ctx, &rx, counter ^ 1, copy, total) == -1, "wrong counter opened");
  memcpy(copy, msg, total);
  CHECK(dp_open(ctx, &kp, counter, copy, total) == -1, "wrong key opened");
  for (size_t short_len = 0; short_len < DP_HEADER_LEN + DP_TAG_LEN; short_len += 7) {
    uint8_t *s = malloc(short_len ? short_len : 1);
    memcpy(s, msg, short_len);
    CHECK(dp_open(ctx, &rx, counter, s, short_len) == -1, "short message (%zu) opened", short_len);
    free(s);
  }
  if (total > DP_HEADER_LEN + DP_TAG_LEN) {
    memcpy(copy, msg, total);
    CHECK(dp_open(ctx, &rx, counter, copy, total - 1) == -1, "truncated message opened");
  }

  /* Every single flipped bit of ciphertext and tag (or a sample of them). */
  size_t bits = (total - DP_HEADER_LEN) * 8;
  size_t tries = flip_all_bits ? bits : 64;
  for (size_t t = 0; t < tries; t++) {
    size_t b = flip_all_bits ? t : below(bits);
    memcpy(copy, msg, total);
    copy[DP_HEADER_LEN + b / 8] ^= (uint8_t)(1u << (b % 8));
    CHECK(dp_open(ctx, &rx, counter, copy, total) == -1, "flipped bit %zu (len %zu) opened", b, len);
  }
out:
  free(pt);
  free(msg);
  free(want);
  free(copy);
}

static void test_seal_open(void) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  CHECK(ctx != NULL, "EVP_CIPHER_CTX_new");
  static const size_t flip_lens[] = {0, 1, 15, 16, 17, 40, 63, 64, 100, 1280, 1420};
  for (size_t i = 0; i < sizeof flip_lens / sizeof flip_lens[0]; i++) check_seal_one(ctx, flip_lens[i], 1420, rnd(), true);
  static const uint64_t counters[] = {0, 1, 255, 256, 0xffffffffull, 0x100000000ull, DP_REJECT_AFTER_MESSAGES - 1, UINT64_MAX};
  for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) check_seal_one(ctx, 77, 1420, counters[i], false);
  static const uint32_t mtus[] = {1420, 1280, 0, 1500, 17};
  for (int i = 0; i < 600; i++) check_seal_one(ctx, below(1600), mtus[below(5)], rnd() >> below(64), false);
  EVP_CIPHER_CTX_free(ctx);
}

/* ---------------------------------------------------------------- inner length */

static size_t ref_inner_length(const uint8_t *p, size_t len) {
  if (len == 0) return 0;
  unsigned version = p[0] >> 4;
  if (version == 4) {
    if (len < 20) return 0;
    size_t ihl = 4u * (p[0] & 0x0fu), total = 256u * p[2] + p[3];
    if (ihl < 20 || total < ihl || total > len) return 0;
    return total;
  }
  if (version == 6) {
    if (len < 40) return 0;
    size_t total = 40u + 256u * p[4] + p[5];
    return total > len ? 0 : total;
  }
  return 0;
}

/* A heap copy of exactly len bytes, so ASan catches any read past it. */
static size_t inner_len_exact(const uint8_t *p, size_t len) {
  uint8_t *c = malloc(len ? len : 1);
  memcpy(c, p, len);
  size_t r = dp_inner_length(c, len);
  free(c);
  return r;
}

static void test_inner_length(void) {
  uint8_t b[2000];
  memset(b, 0, sizeof b);
  /* IPv4 */
  b[0] = 0x45;
  b[2] = 0;
  b[3] = 20;
  CHECK(inner_len_exact(b, 20) == 20, "v4 header only");
  CHECK(inner_len_exact(b, 36) == 20, "v4 with padding after it");
  CHECK(inner_len_exact(b, 19) == 0, "v4 shorter than a header");
  b[3] = 84;
  CHECK(inner_len_exact(b, 84) == 84, "v4 84");
  CHECK(inner_len_exact(b, 96) == 84, "v4 84 padded to 96");
  CHECK(inner_len_exact(b, 83) == 0, "v4 total past the buffer");
  b[2] = 0x05;
  b[3] = 0xdc; /* 1500 */
  CHECK(inner_len_exact(b, 1500) == 1500, "v4 1500");
  CHECK(inner_len_exact(b, 1499) == 0, "v4 1500 in 1499");
  b[2] = 0;
  b[3] = 19;
  CHECK(inner_len_exact(b, 40) == 0, "v4 total below 20");
  b[3] = 0;
  CHECK(inner_len_exact(b, 40) == 0, "v4 total 0");
  b[0] = 0x44; /* ihl 16 */
  b[3] = 40;
  CHECK(inner_len_exact(b, 40) == 0, "v4 ihl 4");
  b[0] = 0x4f; /* ihl 60 */
  CHECK(inner_len_exact(b, 64) == 0, "v4 total below ihl");
  b[3] = 60;
  CHECK(inner_len_exact(b, 64) == 60, "v4 ihl 60");
  /* IPv6 */
  memset(b, 0, sizeof b);
  b[0] = 0x60;
  CHECK(inner_len_exact(b, 40) == 40, "v6 no payload");
  CHECK(inner_len_exact(b, 39) == 0, "v6 shorter than a header");
  b[5] = 8;
  CHECK(inner_len_exact(b, 48) == 48, "v6 8");
  CHECK(inner_len_exact(b, 64) == 48, "v6 8 padded");
  CHECK(inner_len_exact(b, 47) == 0, "v6 payload past the buffer");
  b[4] = 0xff;
  b[5] = 0xff;
  CHECK(inner_len_exact(b, 2000) == 0, "v6 65535");
  /* Other versions, empty. */
  for (unsigned v = 0; v < 16; v++) {
    if (v == 4 || v == 6) continue;
    memset(b, 0, sizeof b);
    b[0] = (uint8_t)(v << 4 | 5);
    b[3] = 40;
    b[5] = 0;
    CHECK(inner_len_exact(b, 100) == 0, "version %u", v);
  }
  CHECK(inner_len_exact(b, 0) == 0, "empty");
  /* Random, against the reference. */
  for (int i = 0; i < 200000; i++) {
    size_t len = below(100) < 80 ? below(80) : below(sizeof b);
    rnd_bytes(b, len);
    if (len && below(4)) b[0] = (uint8_t)((below(2) ? 0x40 : 0x60) | (b[0] & 15));
    if (len > 5 && below(2)) { /* plausible lengths */
      size_t t = below(len + 10);
      if ((b[0] >> 4) == 4) b[2] = (uint8_t)(t >> 8), b[3] = (uint8_t)t;
      else t = t > 40 ? t - 40 : 0, b[4] = (uint8_t)(t >> 8), b[5] = (uint8_t)t;
    }
    size_t got = inner_len_exact(b, len), want = ref_inner_length(b, len);
    CHECK(got == want, "random %d: len %zu got %zu want %zu", i, len, got, want);
  }
}

/* ---------------------------------------------------------------- allowed IPs */

static bool prefix_match(const dp_aip_entry *e, int family, const uint8_t *addr) {
  if (e->family != family || e->cidr > (family == 4 ? 32 : 128)) return false;
  for (unsigned bit = 0; bit < e->cidr; bit++) {
    unsigned byte = bit / 8, shift = 7 - bit % 8;
    if (((e->addr[byte] >> shift) & 1) != ((addr[byte] >> shift) & 1)) return false;
  }
  return true;
}

static uint32_t brute_lookup(const dp_aip_entry *e, size_t n, int family, const uint8_t *addr) {
  int best = -1;
  uint32_t peer = UINT32_MAX;
  for (size_t i = 0; i < n; i++) {
    if (!prefix_match(&e[i], family, addr)) continue;
    if ((int)e[i].cidr >= best) { /* >=: the same prefix given again, later wins */
      best = e[i].cidr;
      peer = e[i].peer_id;
    }
  }
  return peer;
}

/* A random address near one of a few bases, so that prefixes overlap. */
static void rand_addr(int family, uint8_t out[16], const uint8_t bases[8][16]) {
  size_t n = family == 4 ? 4 : 16;
  memset(out, 0, 16);
  if (below(10) == 0) {
    rnd_bytes(out, n);
    return;
  }
  memcpy(out, bases[below(8)], n);
  /* Randomise a random-length tail. */
  unsigned keep = (unsigned)below(n * 8 + 1);
  for (unsigned bit = keep; bit < n * 8; bit++)
    if (below(2)) out[bit / 8] ^= (uint8_t)(1u << (7 - bit % 8));
}

static void test_allowedips_round(size_t n, size_t probes) {
  dp_aip_entry *e = calloc(n ? n : 1, sizeof *e);
  uint8_t bases4[8][16], bases6[8][16];
  for (int i = 0; i < 8; i++) {
    memset(bases4[i], 0, 16);
    memset(bases6[i], 0, 16);
    rnd_bytes(bases4[i], 4);
    rnd_bytes(bases6[i], 16);
  }
  for (size_t i = 0; i < n; i++) {
    uint64_t k = below(100);
    e[i].family = below(2) ? 4 : 6;
    unsigned max = e[i].family == 4 ? 32 : 128;
    e[i].peer_id = (uint32_t)below(64);
    if (k < 30) e[i].cidr = (uint8_t)max;
    else if (k < 33) e[i].cidr = 0;
    else if (k < 35) e[i].cidr = (uint8_t)(max + 1 + below(3)); /* invalid: ignored by both */
    else if (k < 37) e[i].family = 5, e[i].cidr = (uint8_t)below(33); /* invalid family */
    else e[i].cidr = (uint8_t)below(max + 1);
    rand_addr(e[i].family == 6 ? 6 : 4, e[i].addr, e[i].family == 6 ? bases6 : bases4);
    if (i > 0 && below(10) == 0) { /* the same prefix again, other host bits or not */
      size_t j = below(i);
      e[i].family = e[j].family;
      e[i].cidr = e[j].cidr;
      memcpy(e[i].addr, e[j].addr, 16);
      if (below(2) && e[i].cidr < 128) e[i].addr[15] ^= 1;
    }
  }
  dp_allowedips *t = dp_allowedips_build(e, n);
  CHECK(t != NULL, "build failed");
  if (t == NULL) return;
  for (size_t p = 0; p < probes; p++) {
    int family = below(2) ? 4 : 6;
    uint8_t a[16];
    uint64_t k = below(10);
    if (k < 3 && n > 0) { /* an entry's own address */
      const dp_aip_entry *x = &e[below(n)];
      family = x->family == 6 ? 6 : 4;
      memcpy(a, x->addr, 16);
    } else {
      rand_addr(family, a, family == 6 ? bases6 : bases4);
    }
    uint32_t got = dp_allowedips_lookup(t, family, a), want = brute_lookup(e, n, family, a);
    CHECK(got == want, "lookup (n %zu, family %d, probe %zu) got %u want %u", n, family, p, got, want);
  }
  dp_allowedips_free(t);
  free(e);
}

static void test_allowedips(void) {
  uint8_t a[16] = {10, 0, 0, 1};
  CHECK(dp_allowedips_lookup(NULL, 4, a) == UINT32_MAX, "NULL table");
  dp_allowedips *t = dp_allowedips_build(NULL, 0);
  CHECK(t != NULL && dp_allowedips_lookup(t, 4, a) == UINT32_MAX && dp_allowedips_lookup(t, 6, a) == UINT32_MAX, "empty");
  dp_allowedips_free(t);

  /* Fixed cases: /0 catches all of one family only; longer wins; later duplicate wins. */
  dp_aip_entry e[6];
  memset(e, 0, sizeof e);
  e[0] = (dp_aip_entry){.peer_id = 1, .family = 4, .cidr = 0};
  e[1] = (dp_aip_entry){.peer_id = 2, .family = 4, .cidr = 8, .addr = {10}};
  e[2] = (dp_aip_entry){.peer_id = 3, .family = 4, .cidr = 32, .addr = {10, 0, 0, 1}};
  e[3] = (dp_aip_entry){.peer_id = 4, .family = 4, .cidr = 8, .addr = {10, 9, 9, 9}}; /* same /8 as e[1], later */
  e[4] = (dp_aip_entry){.peer_id = 5, .family = 6, .cidr = 128, .addr = {0xfd, [15] = 1}};
  e[5] = (dp_aip_entry){.peer_id = 6, .family = 6, .cidr = 0};
  t = dp_allowedips_build(e, 6);
  uint8_t p1[16] = {10, 0, 0, 1}, p2[16] = {10, 0, 0, 2}, p3[16] = {11, 0, 0, 1}, p4[16] = {0xfd, [15] = 1}, p5[16] = {0xfd};
  CHECK(dp_allowedips_lookup(t, 4, p1) == 3, "/32");
  CHECK(dp_allowedips_lookup(t, 4, p2) == 4, "later /8 wins");
  CHECK(dp_allowedips_lookup(t, 4, p3) == 1, "/0");
  CHECK(dp_allowedips_lookup(t, 6, p4) == 5, "/128");
  CHECK(dp_allowedips_lookup(t, 6, p5) == 6, "v6 /0");
  dp_allowedips_free(t);

  /* Random rounds against brute force. */
  static const size_t sizes[] = {1, 2, 10, 100, 500, 1000, 3000, 3000, 5000};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) test_allowedips_round(sizes[i], 3000);
  /* Many duplicates of few prefixes, in random order: the later entry must win every time. */
  for (int round = 0; round < 50; round++) {
    size_t n = 200;
    dp_aip_entry *d = calloc(n, sizeof *d);
    for (size_t i = 0; i < n; i++) {
      d[i].family = 4;
      d[i].cidr = (uint8_t)(24 + below(2) * 8);
      d[i].addr[0] = 10;
      d[i].addr[3] = (uint8_t)below(4);
      d[i].peer_id = (uint32_t)i;
    }
    t = dp_allowedips_build(d, n);
    for (unsigned x = 0; x < 8; x++) {
      uint8_t q[16] = {10, 0, 0, (uint8_t)x};
      uint32_t got = dp_allowedips_lookup(t, 4, q), want = brute_lookup(d, n, 4, q);
      CHECK(got == want, "duplicates round %d probe %u: got %u want %u", round, x, got, want);
    }
    dp_allowedips_free(t);
    free(d);
  }
}

int main(int argc, char **argv) {
  uint64_t seed = 0x6d657368642d6470ull;
  const char *s = argc > 1 ? argv[1] : getenv("DP_TEST_SEED");
  if (s && *s) seed = strtoull(s, NULL, 0);
  rng_state = seed;
  printf("dp_core_test: seed %llu\n", (unsigned long long)seed);

  test_replay_selftest();
  test_replay_random();
  printf("  replay: selftest + %llu random steps\n", (unsigned long long)replay_steps);
  test_padding();
  printf("  padding: 13 MTUs x 3001 lengths\n");
  test_rfc8439();
  test_seal_open();
  printf("  seal/open: RFC 8439 vector, 619 messages, bit flips\n");
  test_inner_length();
  printf("  inner length\n");
  test_allowedips();
  printf("  allowed IPs\n");
  if (failures) {
    fprintf(stderr, "dp_core_test: %d failures\n", failures);
    return 1;
  }
  printf("dp_core_test: ok\n");
  return 0;
}
