/*
 * Errors and argument checks.
 *
 * System errors become JS Errors shaped like Node's own: `code` is the errno name
 * ('EPERM', 'EBUSY', ...), `errno` is the negated number, `syscall` names the call.
 * Bad arguments throw TypeError / RangeError with code ERR_INVALID_ARG_TYPE / ERR_OUT_OF_RANGE.
 */
#include "meshd_native.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

const char *meshd_errno_name(int err, char *buf, size_t len) {
  /* libuv knows Node's names for almost every errno; EBADFD (a TUN whose interface was
   * deleted) is the one we meet that it does not. */
  if (err == EBADFD) return "EBADFD";
  uv_err_name_r(-err, buf, len);
  if (strncmp(buf, "Unknown", 7) == 0) snprintf(buf, len, "ERRNO_%d", err);
  return buf;
}

static void set_property(napi_env env, napi_value obj, const char *key, napi_value value) {
  if (value != NULL) napi_set_named_property(env, obj, key, value);
}

napi_value meshd_error(napi_env env, const char *code, const char *message) {
  napi_value js_code = NULL, js_message = NULL, error = NULL;
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &js_code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &js_message);
  napi_create_error(env, js_code, js_message, &error);
  return error;
}

napi_value meshd_errno_error(napi_env env, int err, const char *syscall, const char *message) {
  char name[64];
  napi_value error = meshd_error(env, meshd_errno_name(err, name, sizeof name), message);
  if (error == NULL) return NULL;
  napi_value js_errno = NULL, js_syscall = NULL;
  napi_create_int32(env, -err, &js_errno);
  set_property(env, error, "errno", js_errno);
  if (syscall != NULL) {
    napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &js_syscall);
    set_property(env, error, "syscall", js_syscall);
  }
  return error;
}

void meshd_throw_errno(napi_env env, int err, const char *syscall, const char *fmt, ...) {
  char message[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  napi_value error = meshd_errno_error(env, err, syscall, message);
  if (error != NULL) napi_throw(env, error);
}

void meshd_throw_type(napi_env env, const char *fmt, ...) {
  char message[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
}

void meshd_throw_range(napi_env env, const char *fmt, ...) {
  char message[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
}

void meshd_throw_napi_failure(napi_env env, const char *what) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  char message[256];
  snprintf(message, sizeof message, "meshd native: %s failed: %s", what,
           info != NULL && info->error_message != NULL ? info->error_message : "unknown");
  napi_throw_error(env, "ERR_NAPI", message);
}

bool meshd_get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    meshd_throw_napi_failure(env, "napi_get_cb_info");
    return false;
  }
  /* Missing trailing arguments arrive as undefined; the typed getters reject them. */
  return true;
}

static bool is_type(napi_env env, napi_value value, napi_valuetype want) {
  napi_valuetype type;
  return napi_typeof(env, value, &type) == napi_ok && type == want;
}

bool meshd_get_fd(napi_env env, napi_value value, int *fd) {
  double d;
  if (!is_type(env, value, napi_number) || napi_get_value_double(env, value, &d) != napi_ok) {
    meshd_throw_type(env, "fd must be a number");
    return false;
  }
  if (!(d >= 0 && d <= INT32_MAX) || d != (double)(int32_t)d) {
    meshd_throw_range(env, "fd must be a non-negative integer");
    return false;
  }
  *fd = (int)d;
  return true;
}

bool meshd_get_u32(napi_env env, napi_value value, const char *what, uint32_t *out) {
  double d;
  if (!is_type(env, value, napi_number) || napi_get_value_double(env, value, &d) != napi_ok) {
    meshd_throw_type(env, "%s must be a number", what);
    return false;
  }
  if (!(d >= 0 && d <= UINT32_MAX) || d != (double)(uint32_t)d) {
    meshd_throw_range(env, "%s must be an integer in 0..4294967295", what);
    return false;
  }
  *out = (uint32_t)d;
  return true;
}

bool meshd_get_bool(napi_env env, napi_value value, const char *what, bool *out) {
  if (!is_type(env, value, napi_boolean) || napi_get_value_bool(env, value, out) != napi_ok) {
    meshd_throw_type(env, "%s must be a boolean", what);
    return false;
  }
  return true;
}

bool meshd_get_bytes(napi_env env, napi_value value, const char *what, uint8_t **data, size_t *len) {
  bool is_typed = false;
  napi_typedarray_type type;
  void *ptr = NULL;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, value, &type, len, &ptr, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    meshd_throw_type(env, "%s must be a Uint8Array or Buffer", what);
    return false;
  }
  /* An empty view may have no backing store; callers only use ptr when len > 0. */
  *data = ptr;
  return true;
}

bool meshd_get_u32_array(napi_env env, napi_value value, const char *what, uint32_t **data,
                         size_t *count) {
  bool is_typed = false;
  napi_typedarray_type type;
  void *ptr = NULL;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, value, &type, count, &ptr, NULL, NULL) != napi_ok ||
      type != napi_uint32_array) {
    meshd_throw_type(env, "%s must be a Uint32Array", what);
    return false;
  }
  *data = ptr;
  return true;
}
