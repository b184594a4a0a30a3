// A peer (kernel peer.c): its static key, handshake, sessions, cookie state,
// timers, endpoint, the packets waiting for a session, and its counters.
import { Handshake, type StaticIdentity } from '../noise/handshake.js';
import { CookieMaker } from '../noise/cookie.js';
import { Keypairs } from '../noise/keypair.js';
import { MAX_STAGED_PACKETS } from '../wire/constants.js';
import { PeerTimers } from './timers.js';
import type { Endpoint } from './endpoint.js';

export class Peer {
  readonly publicKey: Buffer;
  readonly handshake: Handshake;
  readonly cookie: CookieMaker;
  readonly keypairs = new Keypairs();
  readonly timers: PeerTimers;
  endpoint: Endpoint | null = null;
  /** Outbound packets waiting for a usable session, oldest first (bounded). */
  readonly staged: Uint8Array[] = [];
  /** Index-table entry of the handshake in flight, 0 if none. */
  handshakeIndex = 0;
  /** Monotonic ms of the last initiation we sent (rate-limits them to one per REKEY_TIMEOUT). */
  lastSentHandshake = -Infinity;
  /** Receive-side "last minute" rekey sent for the current session (kernel keep_key_fresh). */
  sentLastMinuteHandshake = false;
  /** Wall-clock ms of the last completed handshake, 0 if never (UAPI last_handshake_time). */
  lastHandshakeWall = 0;
  rxBytes = 0;
  txBytes = 0;
  rxPackets = 0;
  txPackets = 0;
  handshakesCompleted = 0;

  constructor(publicKey: Uint8Array, identity: StaticIdentity | null, jitter?: () => number) {
    this.publicKey = Buffer.from(publicKey);
    this.handshake = new Handshake(publicKey, identity);
    this.cookie = new CookieMaker(publicKey);
    this.timers = new PeerTimers(jitter);
  }

  get persistentKeepalive(): number {
    return this.timers.persistentKeepaliveInterval;
  }

  /** Queues a packet for when a session exists; the oldest is dropped when full. Returns false if one was dropped. */
  stage(packet: Uint8Array): boolean {
    this.staged.push(packet);
    if (this.staged.length > MAX_STAGED_PACKETS) {
      this.staged.shift();
      return false;
    }
    return true;
  }
}
