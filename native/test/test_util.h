/*
 * What the standalone C tests share: a CHECK that reports and counts instead of aborting
 * (a run shows up to 20 failures at once), and a seeded SplitMix64 generator so that every
 * random test is repeatable from its seed.
 */
#ifndef MESHD_TEST_UTIL_H
#define MESHD_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int failures;
#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                            \
      fputc('\n', stderr);                                                     \
      if (++failures >= 20) exit(1);                                           \
    }                                                                          \
  } while (0)

static uint64_t rng_state;
static inline uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static inline uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }
static inline void rnd_bytes(uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rnd();
}

#endif /* MESHD_TEST_UTIL_H */
