// A session's transport keys and counters (paper §5.4.5-§5.4.6), and the
// current / previous / next rotation of the kernel's noise_keypairs: the
// responder may not send on a new session until the initiator has proven it
// holds it by sending the first data packet (§5.4.4, "key confirmation").
import { REJECT_AFTER_MESSAGES_JS, REJECT_AFTER_TIME } from '../wire/constants.js';
import { ReplayWindow } from './replay.js';

export class Keypair {
  /** Next counter to use for sending (the nonce). */
  sendingCounter = 0;
  readonly replay = new ReplayWindow();
  /** False once zeroed; no packet is sent or accepted under it. */
  valid = true;
  /** False once expired for sending (kernel: sending.is_valid); receiving may go on. */
  sendingValid = true;

  constructor(
    readonly sendKey: Buffer,
    readonly receiveKey: Buffer,
    readonly isInitiator: boolean,
    readonly localIndex: number,
    readonly remoteIndex: number,
    /** Monotonic ms when the session was derived. */
    readonly created: number,
  ) {}

  /** REJECT_AFTER_TIME and REJECT_AFTER_MESSAGES (§6.2) bound what a key may protect. */
  canSend(now: number): boolean {
    return this.valid && this.sendingValid && now - this.created < REJECT_AFTER_TIME && this.sendingCounter < REJECT_AFTER_MESSAGES_JS;
  }

  canReceive(now: number): boolean {
    return this.valid && now - this.created < REJECT_AFTER_TIME;
  }

  /** Wipes the key material; the keypair is unusable afterwards. */
  zero(): void {
    this.valid = false;
    this.sendingValid = false;
    this.sendKey.fill(0);
    this.receiveKey.fill(0);
  }
}

/** Keypairs that dropped out of the rotation; the caller frees their indices. */
export type Dropped = Keypair[];

export class Keypairs {
  current: Keypair | null = null;
  previous: Keypair | null = null;
  next: Keypair | null = null;

  /** Installs a freshly derived session (kernel: noise_keypairs add). */
  add(kp: Keypair): Dropped {
    const dropped: Keypair[] = [];
    if (kp.isInitiator) {
      // The initiator has the response in hand: the new keypair is usable now.
      if (this.next) {
        // An unconfirmed next keypair becomes previous (so its late packets
        // still decrypt); the current one is dropped.
        if (this.previous) dropped.push(this.previous);
        if (this.current) dropped.push(this.current);
        this.previous = this.next;
        this.next = null;
      } else {
        if (this.previous) dropped.push(this.previous);
        this.previous = this.current;
      }
      this.current = kp;
    } else {
      // The responder waits for the first data packet under the new keys.
      if (this.next) dropped.push(this.next);
      if (this.previous) dropped.push(this.previous);
      this.next = kp;
      this.previous = null;
    }
    for (const d of dropped) d.zero();
    return dropped;
  }

  /**
   * A data packet authenticated under `kp`. If `kp` is the pending next
   * keypair this confirms the handshake: it is promoted to current. Returns
   * whether that happened and which keypairs fell out.
   */
  receivedWith(kp: Keypair): { confirmed: boolean; dropped: Dropped } {
    if (kp !== this.next) return { confirmed: false, dropped: [] };
    const dropped: Keypair[] = [];
    if (this.previous) dropped.push(this.previous);
    this.previous = this.current;
    this.current = kp;
    this.next = null;
    for (const d of dropped) d.zero();
    return { confirmed: true, dropped };
  }

  /** Stops sending on the current keypair (e.g. the peer's key changed). */
  expireCurrent(): void {
    if (this.next) this.next.sendingValid = false;
    if (this.current) this.current.sendingValid = false;
  }

  /** Drops every keypair (kernel: zero_key_material, or peer removal). */
  clear(): Dropped {
    const dropped = [this.previous, this.current, this.next].filter((k): k is Keypair => k !== null);
    this.previous = this.current = this.next = null;
    for (const d of dropped) d.zero();
    return dropped;
  }
}
