/*
 * Batch reader: a uv_poll watcher on the TUN fd. On each wakeup it reads up to maxBatch
 * packets (one read() per packet, as the TUN hands them out) until EAGAIN, then calls the
 * JS callback once with the count.
 *
 * startReading(fd, onBatch, maxBatch, slotSize)
 *   -> { buffer: ArrayBuffer, lengths: Uint32Array, maxBatch, slotSize }
 *   The ring is one ArrayBuffer made once per reader: packet i of a batch is at byte
 *   i * slotSize, lengths[i] bytes long; lengths lives at the end of the same ArrayBuffer.
 *   onBatch(count) runs once per wakeup with count >= 1. The bytes are only valid during
 *   that call: the next wakeup reads over them. No JS object is made per packet.
 *   onBatch(0, error) reports a fatal error (the interface was deleted, the fd closed under
 *   us, the ring was transferred away); the reader has stopped by the time it returns.
 * stopReading(fd) -> boolean (false when fd had no reader)
 * readerStats(fd) -> { packets, truncated, wakeups, fullBatches } | undefined
 *
 * Truncation is never silent. The TUN driver copies min(packet, buffer) bytes and returns
 * the copied count, so each read offers the slot plus one spare byte: a read longer than the
 * slot means the packet did not fit. It is dropped and counted in `truncated`.
 *
 * Lifetime: while reading, the poll handle is referenced (a reading TUN keeps the process
 * alive) and the reader holds strong references to the callback and the ring. Stopping
 * releases both at once and uv_close()s the handle; the struct is freed in the close
 * callback, so a stop from inside onBatch is safe. After that nothing holds the loop.
 */
#include "meshd_native.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

struct meshd_reader {
  uv_poll_t poll;
  napi_env env;
  meshd_state *state; /* NULL once the environment's state is gone */
  meshd_reader *next;
  int fd;
  bool stopping;
  uint32_t max_batch;
  uint32_t slot_size;
  uint8_t *slots;    /* max_batch * slot_size bytes, inside the ring ArrayBuffer */
  uint32_t *lengths; /* max_batch entries, at the end of the same ArrayBuffer */
  uint8_t spare[8];  /* receives the byte past a slot: proof of truncation */
  napi_ref ring_ref;
  napi_ref callback_ref;
  napi_async_context async_context;
  napi_async_cleanup_hook_handle cleanup_hook;
  uint64_t packets, truncated, wakeups, full_batches;
};

static meshd_reader *find_reader(meshd_state *state, int fd) {
  for (meshd_reader *r = state != NULL ? state->readers : NULL; r != NULL; r = r->next) {
    if (r->fd == fd) return r;
  }
  return NULL;
}

static void unlink_reader(meshd_reader *r) {
  if (r->state == NULL) return;
  for (meshd_reader **p = &r->state->readers; *p != NULL; p = &(*p)->next) {
    if (*p == r) {
      *p = r->next;
      break;
    }
  }
  r->state = NULL;
  r->next = NULL;
}

/* Drops everything that ties the reader to JS. Idempotent. */
static void release_js(meshd_reader *r) {
  if (r->callback_ref != NULL) napi_delete_reference(r->env, r->callback_ref);
  if (r->ring_ref != NULL) napi_delete_reference(r->env, r->ring_ref);
  if (r->async_context != NULL) napi_async_destroy(r->env, r->async_context);
  r->callback_ref = NULL;
  r->ring_ref = NULL;
  r->async_context = NULL;
}

static void on_closed(uv_handle_t *handle) {
  meshd_reader *r = handle->data;
  if (r->cleanup_hook != NULL) napi_remove_async_cleanup_hook(r->cleanup_hook);
  free(r);
}

static void stop_reader(meshd_reader *r) {
  if (r->stopping) return;
  r->stopping = true;
  uv_poll_stop(&r->poll);
  unlink_reader(r);
  release_js(r);
  uv_close((uv_handle_t *)&r->poll, on_closed);
}

/* Worker exit or environment teardown: close the handle so the loop can finish. */
static void on_env_teardown(napi_async_cleanup_hook_handle handle, void *arg) {
  (void)handle; /* the same as r->cleanup_hook, removed in on_closed */
  stop_reader(arg);
}

/* Runs onBatch(count[, error]) as a top-level callback: microtasks and nextTicks run after
 * it, and an exception it throws goes to process 'uncaughtException'. */
static void call_js(meshd_reader *r, uint32_t count, napi_value error) {
  napi_env env = r->env;
  napi_value callback, recv, argv[2], result;
  if (r->callback_ref == NULL ||
      napi_get_reference_value(env, r->callback_ref, &callback) != napi_ok || callback == NULL ||
      napi_get_global(env, &recv) != napi_ok || /* napi_make_callback needs an object */
      napi_create_uint32(env, count, &argv[0]) != napi_ok) {
    return;
  }
  size_t argc = 1;
  if (error != NULL) argv[argc++] = error;
  napi_status status = napi_make_callback(env, r->async_context, recv, callback, argc, argv, &result);
  if (status == napi_pending_exception) {
    napi_value exception;
    if (napi_get_and_clear_last_exception(env, &exception) == napi_ok) {
      napi_fatal_exception(env, exception);
    }
  }
}

static void fail_reader(meshd_reader *r, napi_value error) {
  call_js(r, 0, error);
  stop_reader(r);
}

static void fail_reader_errno(meshd_reader *r, int err, const char *syscall) {
  const char *message;
  switch (err) {
  case EBADFD:
    message = "TUN read failed: the interface was deleted or detached from this fd";
    break;
  case EBADF:
    message = "TUN read failed: the fd was closed while a reader was active (use close(fd))";
    break;
  default:
    message = strerror(err);
  }
  fail_reader(r, meshd_errno_error(r->env, err, syscall, message));
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  meshd_reader *r = handle->data;
  (void)events;
  if (r->stopping) return;
  napi_env env = r->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;

  if (status < 0) {
    /* libuv reports EPOLLERR as UV_EBADF; a read says what really happened
     * (EBADFD once the interface is deleted). */
    int err = -status;
    if (read(r->fd, r->spare, sizeof r->spare) < 0 && errno != EAGAIN && errno != EINTR) err = errno;
    fail_reader_errno(r, err, "read");
    goto out;
  }

  napi_value ring;
  bool detached = false;
  if (napi_get_reference_value(env, r->ring_ref, &ring) != napi_ok ||
      napi_is_detached_arraybuffer(env, ring, &detached) != napi_ok || detached) {
    fail_reader(r, meshd_error(env, "ERR_INVALID_STATE",
                               "TUN read ring was detached (transferred) while reading"));
    goto out;
  }

  uint32_t count = 0;
  int err = 0;
  /* At most max_batch reads per wakeup: a busy TUN cannot starve the rest of the loop, and
   * the poll is level-triggered, so whatever is left wakes us again next iteration. */
  for (uint32_t attempt = 0; attempt < r->max_batch;) {
    struct iovec iov[2] = {
        {.iov_base = r->slots + (size_t)count * r->slot_size, .iov_len = r->slot_size},
        {.iov_base = r->spare, .iov_len = 1},
    };
    ssize_t n = readv(r->fd, iov, 2);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
      break;
    }
    attempt++;
    if (n == 0) break;
    if ((size_t)n > r->slot_size) {
      r->truncated++;
      continue;
    }
    r->lengths[count++] = (uint32_t)n;
  }
  r->wakeups++;
  r->packets += count;
  if (count == r->max_batch) r->full_batches++;

  if (count > 0) call_js(r, count, NULL);
  if (err != 0 && !r->stopping) fail_reader_errno(r, err, "read");

out:
  napi_close_handle_scope(env, scope);
}

/* Creates the ring ArrayBuffer (slots, then lengths) and the object returned to JS. */
static napi_value make_ring(napi_env env, meshd_reader *r) {
  size_t slots_bytes = (size_t)r->max_batch * r->slot_size;
  size_t lengths_offset = (slots_bytes + 7u) & ~(size_t)7u;
  size_t total = lengths_offset + (size_t)r->max_batch * sizeof(uint32_t);
  void *data = NULL;
  napi_value ring, lengths, result, js_batch, js_slot;
  MESHD_CALL(env, napi_create_arraybuffer(env, total, &data, &ring));
  MESHD_CALL(env, napi_create_typedarray(env, napi_uint32_array, r->max_batch, ring,
                                         lengths_offset, &lengths));
  MESHD_CALL(env, napi_create_object(env, &result));
  MESHD_CALL(env, napi_create_uint32(env, r->max_batch, &js_batch));
  MESHD_CALL(env, napi_create_uint32(env, r->slot_size, &js_slot));
  MESHD_CALL(env, napi_set_named_property(env, result, "buffer", ring));
  MESHD_CALL(env, napi_set_named_property(env, result, "lengths", lengths));
  MESHD_CALL(env, napi_set_named_property(env, result, "maxBatch", js_batch));
  MESHD_CALL(env, napi_set_named_property(env, result, "slotSize", js_slot));
  MESHD_CALL(env, napi_create_reference(env, ring, 1, &r->ring_ref));
  r->slots = data;
  r->lengths = (uint32_t *)((uint8_t *)data + lengths_offset);
  return result;
}

napi_value meshd_tun_start_reading(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int fd;
  uint32_t max_batch, slot_size;
  if (!meshd_get_args(env, info, 4, argv) || !meshd_get_fd(env, argv[0], &fd)) return NULL;
  napi_valuetype type;
  MESHD_CALL(env, napi_typeof(env, argv[1], &type));
  if (type != napi_function) {
    meshd_throw_type(env, "onBatch must be a function");
    return NULL;
  }
  if (!meshd_get_u32(env, argv[2], "maxBatch", &max_batch) ||
      !meshd_get_u32(env, argv[3], "slotSize", &slot_size)) {
    return NULL;
  }
  if (max_batch < 1 || max_batch > MESHD_BATCH_MAX) {
    meshd_throw_range(env, "maxBatch must be in 1..%u, got %u", MESHD_BATCH_MAX, max_batch);
    return NULL;
  }
  if (slot_size < MESHD_SLOT_MIN || slot_size > MESHD_SLOT_MAX) {
    meshd_throw_range(env, "slotSize must be in %u..%u bytes, got %u", MESHD_SLOT_MIN,
                      MESHD_SLOT_MAX, slot_size);
    return NULL;
  }

  meshd_state *state = meshd_state_of(env);
  if (state == NULL) {
    meshd_throw_napi_failure(env, "napi_get_instance_data");
    return NULL;
  }
  if (find_reader(state, fd) != NULL) {
    meshd_throw_errno(env, EBUSY, NULL, "fd %d already has a reader (stopReading first)", fd);
    return NULL;
  }
  /* A blocking fd would stall the event loop in read(); fds from open() already are not. */
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)) {
    int err = errno;
    meshd_throw_errno(env, err, "fcntl", "cannot read fd %d: %s", fd, strerror(err));
    return NULL;
  }

  meshd_reader *r = calloc(1, sizeof *r);
  if (r == NULL) {
    meshd_throw_errno(env, ENOMEM, NULL, "out of memory for a TUN reader");
    return NULL;
  }
  r->env = env;
  r->fd = fd;
  r->max_batch = max_batch;
  r->slot_size = slot_size;
  r->poll.data = r;

  napi_value result = make_ring(env, r), name;
  uv_loop_t *loop = NULL;
  if (result == NULL ||
      napi_create_reference(env, argv[1], 1, &r->callback_ref) != napi_ok ||
      napi_create_string_utf8(env, "meshd.TunReader", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, result, name, &r->async_context) != napi_ok ||
      napi_get_uv_event_loop(env, &loop) != napi_ok) {
    release_js(r);
    free(r);
    meshd_throw_napi_failure(env, "setting up a TUN reader");
    return NULL;
  }
  int uv_err = uv_poll_init(loop, &r->poll, fd);
  if (uv_err != 0) {
    release_js(r);
    free(r);
    meshd_throw_errno(env, -uv_err, "uv_poll_init", "cannot poll fd %d: %s", fd,
                      uv_strerror(uv_err));
    return NULL;
  }
  uv_err = uv_poll_start(&r->poll, UV_READABLE, on_readable);
  if (uv_err != 0) {
    r->stopping = true;
    release_js(r);
    uv_close((uv_handle_t *)&r->poll, on_closed);
    meshd_throw_errno(env, -uv_err, "uv_poll_start", "cannot poll fd %d: %s", fd,
                      uv_strerror(uv_err));
    return NULL;
  }
  /* Not fatal if it fails: the process-exit path reclaims everything anyway. */
  napi_add_async_cleanup_hook(env, on_env_teardown, r, &r->cleanup_hook);
  r->state = state;
  r->next = state->readers;
  state->readers = r;
  return result;
}

bool meshd_reader_stop_fd(meshd_state *state, int fd) {
  meshd_reader *r = find_reader(state, fd);
  if (r == NULL) return false;
  stop_reader(r);
  return true;
}

void meshd_readers_detach(meshd_state *state) {
  while (state->readers != NULL) unlink_reader(state->readers);
}

napi_value meshd_tun_stop_reading(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int fd;
  if (!meshd_get_args(env, info, 1, argv) || !meshd_get_fd(env, argv[0], &fd)) return NULL;
  MESHD_CALL(env, napi_get_boolean(env, meshd_reader_stop_fd(meshd_state_of(env), fd), &result));
  return result;
}

static bool set_count(napi_env env, napi_value obj, const char *key, uint64_t value) {
  napi_value v;
  /* Doubles are exact to 2^53 packets: centuries at line rate. */
  return napi_create_double(env, (double)value, &v) == napi_ok &&
         napi_set_named_property(env, obj, key, v) == napi_ok;
}

napi_value meshd_tun_reader_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int fd;
  if (!meshd_get_args(env, info, 1, argv) || !meshd_get_fd(env, argv[0], &fd)) return NULL;
  meshd_reader *r = find_reader(meshd_state_of(env), fd);
  if (r == NULL) {
    MESHD_CALL(env, napi_get_undefined(env, &result));
    return result;
  }
  MESHD_CALL(env, napi_create_object(env, &result));
  if (!set_count(env, result, "packets", r->packets) ||
      !set_count(env, result, "truncated", r->truncated) ||
      !set_count(env, result, "wakeups", r->wakeups) ||
      !set_count(env, result, "fullBatches", r->full_batches)) {
    meshd_throw_napi_failure(env, "building reader stats");
    return NULL;
  }
  return result;
}
