/*
 * A libFuzzer entry point for dp_rx_datagram. Not run by run.sh (its name does not end in
 * _test.c) nor in CI. With clang:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Inative/src \
 *     native/test/dp_rx_libfuzzer.c native/src/dp_core.c native/src/dp_tables.c \
 *     native/src/dp_allowedips.c native/src/dp_events.c native/src/flowcache.c \
 *     -lcrypto -lpthread -o /tmp/dp_rx_libfuzzer && /tmp/dp_rx_libfuzzer -max_len=2048
 *
 * Without libFuzzer, -DDP_FUZZ_STANDALONE adds a main() that runs each file named on the
 * command line once (gcc works too).
 *
 * Input: byte 0 picks the mode. Even: bytes 1.. are a datagram as received (it cannot be
 * authentic, so it must never be delivered). Odd: bytes 1.. are an inner packet, sealed by
 * the test as peer (b0 >> 1) & 1 under its keypair (b0 >> 2) % 3 with a fresh counter; if it
 * is delivered, it must be exactly the packet's first dp_inner_length bytes, from that peer.
 */
#include "datapath.h"
#include "flowcache.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW 5000000ull

static dp *D;
static EVP_CIPHER_CTX *CTX;
static uint8_t keys[2][3][32];
static uint32_t local_idx[2][3];
static uint64_t counters[2][3];

static void init(void) {
  D = dp_create(1420);
  CTX = EVP_CIPHER_CTX_new();
  if (D == NULL || CTX == NULL) abort();
  D->ev_wake = NULL;
  dp_aip_entry e[4];
  memset(e, 0, sizeof e);
  for (int i = 0; i < 2; i++) {
    if (dp_peer_upsert(D, (uint32_t)i + 1) != 0) abort();
    dp_keypair_spec spec[3];
    memset(spec, 0, sizeof spec);
    for (int s = 0; s < 3; s++) {
      spec[s].present = true;
      spec[s].local_index = local_idx[i][s] = 0x01020304u * (uint32_t)(i * 3 + s + 1);
      spec[s].remote_index = 77;
      for (int b = 0; b < 32; b++) keys[i][s][b] = spec[s].recv_key[b] = (uint8_t)(i * 100 + s * 10 + b);
      spec[s].created = NOW;
      spec[s].sending_valid = s == DP_CURRENT;
    }
    if (dp_peer_set_keypairs(D, dp_peer_get(D, (uint32_t)i + 1), spec) != 0) abort();
    e[2 * i] = (dp_aip_entry){.peer_id = (uint32_t)i + 1, .family = 4, .cidr = 16, .addr = {10, (uint8_t)i}};
    e[2 * i + 1] = (dp_aip_entry){.peer_id = (uint32_t)i + 1, .family = 6, .cidr = 48, .addr = {0xfd, 0, (uint8_t)i}};
  }
  dp_set_allowedips(D, dp_allowedips_build(e, 4));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (D == NULL) init();
  if (size < 1 || size > 4096) return 0;
  uint8_t mode = data[0];
  const uint8_t *in = data + 1;
  size_t n = size - 1;
  uint8_t *buf;
  size_t len;
  int peer = (mode >> 1) & 1, slot = (mode >> 2) % 3;
  if (mode & 1) {
    if (n > 1400) n = 1400;
    buf = malloc(DP_HEADER_LEN + n + 16 + DP_TAG_LEN);
    dp_keypair m;
    memset(&m, 0, sizeof m);
    memcpy(m.send_key, keys[peer][slot], 32);
    m.remote_index = local_idx[peer][slot];
    if (n) memcpy(buf + DP_HEADER_LEN, in, n);
    len = dp_seal(CTX, &m, counters[peer][slot]++, buf, n, 1420);
    if (len == 0) abort();
    buf = realloc(buf, len); /* exactly its length */
  } else {
    len = n;
    buf = malloc(len ? len : 1);
    if (len) memcpy(buf, in, len);
  }
  dp_rx_result r;
  pthread_rwlock_rdlock(&D->lock);
  dp_rx_datagram(D, CTX, NULL, buf, len, NULL, NOW + 1, &r);
  pthread_rwlock_unlock(&D->lock);
  if (r.action != DP_RX_DROP && r.action != DP_RX_DONE && r.action != DP_RX_DELIVER) abort();
  if (r.action == DP_RX_DELIVER) {
    if (!(mode & 1)) abort(); /* a forgery delivered */
    size_t want = dp_inner_length(in, n);
    if (r.peer == NULL || r.peer->id != (uint32_t)peer + 1 || r.len != want || r.data != buf + DP_HEADER_LEN ||
        memcmp(r.data, in, want) != 0)
      abort();
  }
  free(buf);
  dp_free_events(dp_take_events(D));
  return 0;
}

#ifdef DP_FUZZ_STANDALONE
int main(int argc, char **argv) {
  static uint8_t b[4096];
  for (int i = 1; i < argc; i++) {
    FILE *f = fopen(argv[i], "rb");
    if (f == NULL) {
      perror(argv[i]);
      return 1;
    }
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    LLVMFuzzerTestOneInput(b, n);
  }
  if (D) dp_destroy(D);
  EVP_CIPHER_CTX_free(CTX);
  printf("dp_rx_libfuzzer: %d inputs\n", argc - 1);
  return 0;
}
#endif
