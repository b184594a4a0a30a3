/*
 * Events from the datapath threads to JS: a FIFO bounded in count and in bytes, and per kind,
 * so that a remote party flooding handshakes or filtered packets costs us a counted drop, never
 * memory, and never the other kinds' room.
 * The first event into an empty queue wakes JS (a thread-safe function in dp_napi.c), which
 * takes the whole list at once.
 */
#include "datapath.h"

#include <stdlib.h>
#include <string.h>

bool dp_post(dp *d, int kind, uint32_t peer_id, uint32_t arg, const dp_endpoint *from, const uint8_t *data, size_t len) {
  dp_event *e = malloc(sizeof *e + len);
  if (e == NULL) {
    dp_drop(d, DP_DROP_eventQueueFull);
    return false;
  }
  e->next = NULL;
  e->kind = (uint8_t)kind;
  e->peer_id = peer_id;
  e->arg = arg;
  if (from) e->from = *from;
  else memset(&e->from, 0, sizeof e->from);
  e->len = (uint32_t)len;
  if (len) memcpy(e->data, data, len);
  bool wake;
  pthread_mutex_lock(&d->ev_lock);
  bool flooding_kind = kind == DP_EV_HANDSHAKE || kind == DP_EV_STAGE || kind == DP_EV_VERDICT || kind == DP_EV_FLOW;
  if (d->ev_count >= DP_EV_MAX_COUNT || d->ev_bytes + len > DP_EV_MAX_BYTES ||
      (flooding_kind && d->ev_kind_count[kind] >= DP_EV_KIND_MAX)) {
    pthread_mutex_unlock(&d->ev_lock);
    free(e);
    dp_drop(d, DP_DROP_eventQueueFull);
    return false;
  }
  wake = d->ev_head == NULL;
  if (d->ev_tail) d->ev_tail->next = e;
  else d->ev_head = e;
  d->ev_tail = e;
  d->ev_count++;
  d->ev_kind_count[kind & 7]++;
  d->ev_bytes += len;
  pthread_mutex_unlock(&d->ev_lock);
  if (wake && d->ev_wake) d->ev_wake(d);
  return true;
}

dp_event *dp_take_events(dp *d) {
  pthread_mutex_lock(&d->ev_lock);
  dp_event *e = d->ev_head;
  d->ev_head = d->ev_tail = NULL;
  d->ev_count = 0;
  memset(d->ev_kind_count, 0, sizeof d->ev_kind_count);
  d->ev_bytes = 0;
  pthread_mutex_unlock(&d->ev_lock);
  return e;
}

void dp_free_events(dp_event *e) {
  while (e) {
    dp_event *next = e->next;
    /* Staged and filtered packets are plaintext: wipe them with the rest. */
    dp_wipe(e->data, e->len);
    free(e);
    e = next;
  }
}
