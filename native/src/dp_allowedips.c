/*
 * Cryptokey routing (paper §2): the longest prefix of an address that a peer's allowed IPs
 * hold. The TypeScript trie (src/device/allowedips.ts) is the authority; JS hands its whole
 * entry list over whenever it changes and this side rebuilds. The structure is one hash table
 * per prefix length present, searched longest first: a mesh has few distinct lengths (/32,
 * /128, a few subnet routes), so a lookup is a handful of probes into small tables, with no
 * pointer chasing through 32 or 128 trie levels.
 */
#include "datapath.h"

#include <stdlib.h>
#include <string.h>

typedef struct level {
  uint8_t cidr;
  uint32_t mask; /* capacity - 1 */
  uint64_t *keys; /* hi, lo per slot */
  uint32_t *peers; /* UINT32_MAX = empty */
} level;

typedef struct family {
  uint32_t nlevels;
  level levels[129];
} family;

struct dp_allowedips {
  family f[2]; /* [0] = IPv4, [1] = IPv6 */
};

static inline uint64_t be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

/* An address as two big-endian words; IPv4 sits in the top 32 bits of the first. */
static inline void load(int fam, const uint8_t *a, uint64_t *hi, uint64_t *lo) {
  if (fam == 4) {
    *hi = ((uint64_t)a[0] << 24 | (uint64_t)a[1] << 16 | (uint64_t)a[2] << 8 | a[3]) << 32;
    *lo = 0;
  } else {
    *hi = be64(a);
    *lo = be64(a + 8);
  }
}

static inline void apply_mask(uint8_t cidr, uint64_t *hi, uint64_t *lo) {
  if (cidr == 0) {
    *hi = *lo = 0;
  } else if (cidr < 64) {
    *hi &= ~0ull << (64 - cidr);
    *lo = 0;
  } else if (cidr == 64) {
    *lo = 0;
  } else if (cidr < 128) {
    *lo &= ~0ull << (128 - cidr);
  }
}

static inline uint32_t hash(uint64_t hi, uint64_t lo) {
  uint64_t h = hi * 0x9e3779b97f4a7c15ull ^ (lo + 0x632be59bd9b4e019ull) * 0xc2b2ae3d27d4eb4full;
  return (uint32_t)(h >> 32 ^ h);
}

static int by_family_and_length(const void *a, const void *b) {
  const dp_aip_entry *x = *(const dp_aip_entry *const *)a, *y = *(const dp_aip_entry *const *)b;
  if (x->family != y->family) return x->family - y->family;
  if (x->cidr != y->cidr) return y->cidr - x->cidr; /* longest first */
  /* Then input order (qsort is not stable): a repeated prefix goes to the later entry. */
  return (x > y) - (x < y);
}

void dp_allowedips_free(dp_allowedips *t) {
  if (t == NULL) return;
  for (int f = 0; f < 2; f++) {
    for (uint32_t i = 0; i < t->f[f].nlevels; i++) {
      free(t->f[f].levels[i].keys);
      free(t->f[f].levels[i].peers);
    }
  }
  free(t);
}

dp_allowedips *dp_allowedips_build(const dp_aip_entry *entries, size_t n) {
  dp_allowedips *t = calloc(1, sizeof *t);
  const dp_aip_entry **sorted = n ? malloc(n * sizeof *sorted) : NULL;
  if (t == NULL || (n && sorted == NULL)) goto fail;
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    const dp_aip_entry *e = &entries[i];
    if ((e->family == 4 && e->cidr <= 32) || (e->family == 6 && e->cidr <= 128)) sorted[m++] = e;
  }
  if (m) qsort(sorted, m, sizeof *sorted, by_family_and_length); /* sorted is NULL when n == 0 */
  for (size_t i = 0; i < m;) {
    size_t j = i;
    while (j < m && sorted[j]->family == sorted[i]->family && sorted[j]->cidr == sorted[i]->cidr) j++;
    family *fam = &t->f[sorted[i]->family == 4 ? 0 : 1];
    level *lv = &fam->levels[fam->nlevels++];
    uint32_t cap = 4;
    while (cap < 2 * (j - i)) cap <<= 1;
    lv->cidr = sorted[i]->cidr;
    lv->mask = cap - 1;
    lv->keys = malloc((size_t)cap * 2 * sizeof *lv->keys);
    lv->peers = malloc((size_t)cap * sizeof *lv->peers);
    if (lv->keys == NULL || lv->peers == NULL) goto fail;
    memset(lv->peers, 0xff, (size_t)cap * sizeof *lv->peers);
    for (size_t k = i; k < j; k++) {
      uint64_t hi, lo;
      load(sorted[k]->family, sorted[k]->addr, &hi, &lo);
      apply_mask(lv->cidr, &hi, &lo);
      uint32_t s = hash(hi, lo) & lv->mask;
      while (lv->peers[s] != UINT32_MAX && !(lv->keys[2 * s] == hi && lv->keys[2 * s + 1] == lo)) s = (s + 1) & lv->mask;
      lv->keys[2 * s] = hi;
      lv->keys[2 * s + 1] = lo;
      lv->peers[s] = sorted[k]->peer_id; /* a repeated prefix: the later entry owns it */
    }
    i = j;
  }
  free(sorted);
  return t;
fail:
  free(sorted);
  dp_allowedips_free(t);
  return NULL;
}

uint32_t dp_allowedips_lookup(const dp_allowedips *t, int fam, const uint8_t *addr) {
  if (t == NULL) return UINT32_MAX;
  const family *f = &t->f[fam == 4 ? 0 : 1];
  uint64_t ahi, alo;
  load(fam, addr, &ahi, &alo);
  for (uint32_t i = 0; i < f->nlevels; i++) {
    const level *lv = &f->levels[i];
    uint64_t hi = ahi, lo = alo;
    apply_mask(lv->cidr, &hi, &lo);
    for (uint32_t s = hash(hi, lo) & lv->mask; lv->peers[s] != UINT32_MAX; s = (s + 1) & lv->mask) {
      if (lv->keys[2 * s] == hi && lv->keys[2 * s + 1] == lo) return lv->peers[s];
    }
  }
  return UINT32_MAX;
}
