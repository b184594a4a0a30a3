/*
 * ChaCha20-Poly1305 for transport data (WireGuard paper §5.4.6) through the
 * OpenSSL that Node itself exports, so no extra library is linked. One cipher
 * context per thread is re-keyed per call: node:crypto's createCipheriv costs
 * a few microseconds of fixed overhead per packet, which this avoids.
 *
 *   seal(key, counter, src, srcOff, srcLen, padLen, dst, dstOff) -> bytes written
 *       dst[dstOff..] = AEAD(key, counter, src[srcOff..+srcLen] || zeros(padLen), "")
 *   open(key, counter, src, srcOff, srcLen, dst, dstOff) -> plaintext length, or -1
 *       when authentication fails (dst may then hold garbage)
 *
 * counter is a JS number below 2^53 (the TypeScript datapath's limit); the
 * nonce is 32 zero bits followed by the 64-bit little-endian counter.
 */
#include "meshd_native.h"

#include <openssl/evp.h>
#include <string.h>

#define KEY_LEN 32
#define TAG_LEN 16
#define PAD_MAX 16

static _Thread_local EVP_CIPHER_CTX *seal_ctx;
static _Thread_local EVP_CIPHER_CTX *open_ctx;

static void make_nonce(uint8_t nonce[12], double counter) {
  uint64_t c = (uint64_t)counter;
  memset(nonce, 0, 4);
  for (int i = 0; i < 8; i++) nonce[4 + i] = (uint8_t)(c >> (8 * i));
}

static bool get_counter(napi_env env, napi_value v, double *out) {
  if (napi_get_value_double(env, v, out) != napi_ok || !(*out >= 0 && *out <= 9007199254740991.0) ||
      *out != (double)(uint64_t)*out) {
    meshd_throw_range(env, "counter must be an integer in 0..2^53-1");
    return false;
  }
  return true;
}

static bool get_key(napi_env env, napi_value v, uint8_t **key) {
  size_t len;
  if (!meshd_get_bytes(env, v, "key", key, &len)) return false;
  if (len != KEY_LEN) {
    meshd_throw_range(env, "key must be %d bytes", KEY_LEN);
    return false;
  }
  return true;
}

static bool span_ok(napi_env env, size_t size, uint32_t off, size_t len, const char *what) {
  if ((size_t)off > size || len > size - off) {
    meshd_throw_range(env, "%s span out of range", what);
    return false;
  }
  return true;
}

napi_value meshd_aead_seal(napi_env env, napi_callback_info info) {
  napi_value argv[8], result;
  uint8_t *key, *src, *dst;
  size_t src_size, dst_size;
  uint32_t src_off, src_len, pad_len, dst_off;
  double counter;
  if (!meshd_get_args(env, info, 8, argv) || !get_key(env, argv[0], &key) || !get_counter(env, argv[1], &counter) ||
      !meshd_get_bytes(env, argv[2], "src", &src, &src_size) || !meshd_get_u32(env, argv[3], "srcOff", &src_off) ||
      !meshd_get_u32(env, argv[4], "srcLen", &src_len) || !meshd_get_u32(env, argv[5], "padLen", &pad_len) ||
      !meshd_get_bytes(env, argv[6], "dst", &dst, &dst_size) || !meshd_get_u32(env, argv[7], "dstOff", &dst_off)) {
    return NULL;
  }
  if (pad_len >= PAD_MAX) {
    meshd_throw_range(env, "padLen must be below %d", PAD_MAX);
    return NULL;
  }
  size_t out_len = (size_t)src_len + pad_len + TAG_LEN;
  if (!span_ok(env, src_size, src_off, src_len, "src") || !span_ok(env, dst_size, dst_off, out_len, "dst")) return NULL;
  if (seal_ctx == NULL && (seal_ctx = EVP_CIPHER_CTX_new()) == NULL) {
    meshd_throw_errno(env, 12, "EVP_CIPHER_CTX_new", "out of memory");
    return NULL;
  }
  uint8_t nonce[12];
  static const uint8_t zeros[PAD_MAX];
  make_nonce(nonce, counter);
  uint8_t *out = dst + dst_off;
  int n = 0;
  size_t total = 0;
  bool ok = EVP_EncryptInit_ex(seal_ctx, EVP_chacha20_poly1305(), NULL, key, nonce) == 1;
  if (ok && src_len) {
    ok = EVP_EncryptUpdate(seal_ctx, out, &n, src + src_off, (int)src_len) == 1;
    total += (size_t)n;
  }
  if (ok && pad_len) {
    ok = EVP_EncryptUpdate(seal_ctx, out + total, &n, zeros, (int)pad_len) == 1;
    total += (size_t)n;
  }
  if (ok) {
    ok = EVP_EncryptFinal_ex(seal_ctx, out + total, &n) == 1;
    total += (size_t)n;
  }
  ok = ok && total == (size_t)src_len + pad_len &&
       EVP_CIPHER_CTX_ctrl(seal_ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, out + total) == 1;
  if (!ok) {
    meshd_throw_errno(env, 5, "EVP_Encrypt", "ChaCha20-Poly1305 seal failed");
    return NULL;
  }
  MESHD_CALL(env, napi_create_uint32(env, (uint32_t)out_len, &result));
  return result;
}

napi_value meshd_aead_open(napi_env env, napi_callback_info info) {
  napi_value argv[7], result;
  uint8_t *key, *src, *dst;
  size_t src_size, dst_size;
  uint32_t src_off, src_len, dst_off;
  double counter;
  if (!meshd_get_args(env, info, 7, argv) || !get_key(env, argv[0], &key) || !get_counter(env, argv[1], &counter) ||
      !meshd_get_bytes(env, argv[2], "src", &src, &src_size) || !meshd_get_u32(env, argv[3], "srcOff", &src_off) ||
      !meshd_get_u32(env, argv[4], "srcLen", &src_len) || !meshd_get_bytes(env, argv[5], "dst", &dst, &dst_size) ||
      !meshd_get_u32(env, argv[6], "dstOff", &dst_off)) {
    return NULL;
  }
  if (!span_ok(env, src_size, src_off, src_len, "src")) return NULL;
  if (src_len < TAG_LEN) {
    MESHD_CALL(env, napi_create_int32(env, -1, &result));
    return result;
  }
  size_t pt_len = src_len - TAG_LEN;
  if (!span_ok(env, dst_size, dst_off, pt_len, "dst")) return NULL;
  if (open_ctx == NULL && (open_ctx = EVP_CIPHER_CTX_new()) == NULL) {
    meshd_throw_errno(env, 12, "EVP_CIPHER_CTX_new", "out of memory");
    return NULL;
  }
  uint8_t nonce[12];
  make_nonce(nonce, counter);
  int n = 0, ok;
  uint8_t *in = src + src_off, *out = dst + dst_off;
  ok = EVP_DecryptInit_ex(open_ctx, EVP_chacha20_poly1305(), NULL, key, nonce) == 1 &&
       (pt_len == 0 || EVP_DecryptUpdate(open_ctx, out, &n, in, (int)pt_len) == 1) &&
       EVP_CIPHER_CTX_ctrl(open_ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, in + pt_len) == 1;
  int m = 0;
  // Final verifies the tag; the comparison inside OpenSSL is constant time.
  ok = ok && EVP_DecryptFinal_ex(open_ctx, out + n, &m) == 1;
  MESHD_CALL(env, napi_create_int32(env, ok ? (int32_t)pt_len : -1, &result));
  return result;
}
