// Every constant of the WireGuard paper (Donenfeld, NDSS 2017) by its paper
// name, plus the Noise identifiers of §5.4. Times are in milliseconds.

/** §5.4: the Noise protocol name and WireGuard's identifier and labels. */
export const CONSTRUCTION = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s';
export const IDENTIFIER = 'WireGuard v1 zx2c4 Jason@zx2c4.com';
export const LABEL_MAC1 = 'mac1----';
export const LABEL_COOKIE = 'cookie--';

/** §6.1, Table of timers and limits. */
export const REKEY_AFTER_MESSAGES = 2n ** 60n;
export const REJECT_AFTER_MESSAGES = 2n ** 64n - 2n ** 13n - 1n; // kernel: U64_MAX - COUNTER_WINDOW - 1
export const REKEY_AFTER_TIME = 120_000;
export const REJECT_AFTER_TIME = 180_000;
export const REKEY_ATTEMPT_TIME = 90_000;
export const REKEY_TIMEOUT = 5_000;
export const REKEY_TIMEOUT_JITTER_MAX = 333; // kernel: up to 1/3 s added to each retry
export const KEEPALIVE_TIMEOUT = 10_000;
export const COOKIE_SECRET_MAX_AGE = 120_000;
export const COOKIE_SECRET_LATENCY = 5_000;
export const MAX_TIMER_HANDSHAKES = Math.floor(REKEY_ATTEMPT_TIME / REKEY_TIMEOUT); // 18

/** §5.1: at most this many initiations per peer per second are consumed. */
export const INITIATIONS_PER_SECOND = 50;

/**
 * Counters are JS numbers on the TypeScript datapath. 2^53 messages is ~28
 * years at 10M packets/s, far past REKEY_AFTER_TIME, so the exact 64-bit
 * limits above are never the binding ones; we enforce them as this value.
 */
export const SAFE_COUNTER_LIMIT = Number.MAX_SAFE_INTEGER;
export const REKEY_AFTER_MESSAGES_JS = Math.min(Number(REKEY_AFTER_MESSAGES), SAFE_COUNTER_LIMIT - 2 ** 13);
export const REJECT_AFTER_MESSAGES_JS = SAFE_COUNTER_LIMIT - 2 ** 13 - 1;

/** §5.4 message types. */
export const MESSAGE_HANDSHAKE_INITIATION = 1;
export const MESSAGE_HANDSHAKE_RESPONSE = 2;
export const MESSAGE_COOKIE_REPLY = 3;
export const MESSAGE_TRANSPORT_DATA = 4;

/** Wire sizes of §5.4.2-§5.4.7. */
export const KEY_LEN = 32;
export const TAG_LEN = 16;
export const MAC_LEN = 16;
export const TIMESTAMP_LEN = 12;
export const COOKIE_LEN = 16;
export const COOKIE_NONCE_LEN = 24;
export const HANDSHAKE_INITIATION_LEN = 148;
export const HANDSHAKE_RESPONSE_LEN = 92;
export const COOKIE_REPLY_LEN = 64;
export const TRANSPORT_HEADER_LEN = 16;
export const TRANSPORT_MIN_LEN = TRANSPORT_HEADER_LEN + TAG_LEN; // a keepalive
/** §5.4.6: plaintext is zero-padded to a multiple of 16 bytes. */
export const PADDING_MULTIPLE = 16;

/** Limits on queues a remote party can grow (kernel queueing.h). */
export const MAX_STAGED_PACKETS = 128;
export const MAX_QUEUED_INCOMING_HANDSHAKES = 4096;
/** Under load (kernel: a queue 1/8 full), MAC2 is demanded of every handshake. */
export const UNDER_LOAD_QUEUE_THRESHOLD = MAX_QUEUED_INCOMING_HANDSHAKES / 8;
/** The replay window (kernel noise.h COUNTER_BITS_TOTAL). */
export const COUNTER_BITS_TOTAL = 8192;
