// The per-peer timer state machine (paper §6; kernel timers.c). Pure: the
// device reports events with the current monotonic time, asks for the next
// deadline, and calls `expire(now)` to learn which actions became due. Each
// event method is named for what happened and has a one-line contract.
import { KEEPALIVE_TIMEOUT, MAX_TIMER_HANDSHAKES, REJECT_AFTER_TIME, REKEY_TIMEOUT, REKEY_TIMEOUT_JITTER_MAX } from '../wire/constants.js';

export type TimerAction =
  | 'retransmitHandshake' // no response to our initiation within REKEY_TIMEOUT: send it again
  | 'handshakeGaveUp' // MAX_TIMER_HANDSHAKES retries failed: drop staged packets
  | 'sendKeepalive' // we received data and sent nothing back for KEEPALIVE_TIMEOUT
  | 'newHandshake' // we sent data and heard nothing for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT
  | 'zeroKeyMaterial' // no new session for 3 × REJECT_AFTER_TIME: wipe keys
  | 'persistentKeepalive'; // the configured persistent keepalive interval passed

type TimerName = 'retransmitHandshake' | 'sendKeepalive' | 'newHandshake' | 'zeroKeyMaterial' | 'persistentKeepalive';

export class PeerTimers {
  private readonly deadlines: Record<TimerName, number | null> = {
    retransmitHandshake: null,
    sendKeepalive: null,
    newHandshake: null,
    zeroKeyMaterial: null,
    persistentKeepalive: null,
  };
  /** Retries of the current handshake attempt. */
  handshakeAttempts = 0;
  /** Set when data arrives while a keepalive is already due: send one more after it. */
  private needAnotherKeepalive = false;
  /** Seconds; 0 = off. */
  persistentKeepaliveInterval = 0;
  /** Timers do nothing while the device is down or the peer is being removed. */
  enabled = true;

  /** `jitter()` returns 0..REKEY_TIMEOUT_JITTER_MAX ms, spreading retries of many peers. */
  constructor(private readonly jitter: () => number = () => Math.floor(Math.random() * (REKEY_TIMEOUT_JITTER_MAX + 1))) {}

  private arm(name: TimerName, at: number): void {
    if (this.enabled) this.deadlines[name] = at;
  }

  pending(name: TimerName): boolean {
    return this.deadlines[name] !== null;
  }

  /** We sent a transport packet carrying data: expect an answer or rekey. */
  dataSent(now: number): void {
    if (!this.pending('newHandshake')) this.arm('newHandshake', now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + this.jitter());
  }

  /** We received a transport packet carrying data: owe the peer a keepalive. */
  dataReceived(now: number): void {
    if (!this.pending('sendKeepalive')) this.arm('sendKeepalive', now + KEEPALIVE_TIMEOUT);
    else this.needAnotherKeepalive = true;
  }

  /** We sent any authenticated packet (data, keepalive or handshake): no keepalive owed. */
  anyAuthenticatedPacketSent(): void {
    this.deadlines.sendKeepalive = null;
  }

  /** We received any authenticated packet: the peer is alive, no new handshake needed. */
  anyAuthenticatedPacketReceived(): void {
    this.deadlines.newHandshake = null;
  }

  /** Any authenticated packet went either way: restart the persistent keepalive. */
  anyAuthenticatedPacketTraversal(now: number): void {
    if (this.persistentKeepaliveInterval) this.arm('persistentKeepalive', now + this.persistentKeepaliveInterval * 1000);
  }

  /** We sent a handshake initiation: retry it if no response comes. */
  handshakeInitiated(now: number): void {
    this.arm('retransmitHandshake', now + REKEY_TIMEOUT + this.jitter());
  }

  /** A handshake completed (response consumed, or first data on a responder session). */
  handshakeComplete(): void {
    this.deadlines.retransmitHandshake = null;
    this.handshakeAttempts = 0;
  }

  /** New transport keys exist: wipe them if nothing replaces them in 3 × REJECT_AFTER_TIME. */
  sessionDerived(now: number): void {
    this.arm('zeroKeyMaterial', now + REJECT_AFTER_TIME * 3);
  }

  /** A fresh (non-retry) initiation starts a new attempt count. */
  resetAttempts(): void {
    this.handshakeAttempts = 0;
  }

  stopAll(): void {
    for (const k of Object.keys(this.deadlines) as TimerName[]) this.deadlines[k] = null;
    this.needAnotherKeepalive = false;
  }

  nextDeadline(): number | null {
    let min: number | null = null;
    for (const v of Object.values(this.deadlines)) if (v !== null && (min === null || v < min)) min = v;
    return min;
  }

  /** Fires every timer due at `now` and returns the resulting actions in a stable order. */
  expire(now: number): TimerAction[] {
    const actions: TimerAction[] = [];
    if (!this.enabled) return actions;
    const due = (n: TimerName): boolean => {
      const d = this.deadlines[n];
      if (d === null || d > now) return false;
      this.deadlines[n] = null;
      return true;
    };
    if (due('retransmitHandshake')) {
      if (this.handshakeAttempts > MAX_TIMER_HANDSHAKES) {
        actions.push('handshakeGaveUp');
        // Keys from a session that can no longer be renewed are wiped later.
        if (!this.pending('zeroKeyMaterial')) this.arm('zeroKeyMaterial', now + REJECT_AFTER_TIME * 3);
      } else {
        this.handshakeAttempts++;
        actions.push('retransmitHandshake');
      }
    }
    if (due('sendKeepalive')) {
      actions.push('sendKeepalive');
      if (this.needAnotherKeepalive) {
        this.needAnotherKeepalive = false;
        this.arm('sendKeepalive', now + KEEPALIVE_TIMEOUT);
      }
    }
    if (due('newHandshake')) actions.push('newHandshake');
    if (due('zeroKeyMaterial')) actions.push('zeroKeyMaterial');
    if (due('persistentKeepalive')) actions.push('persistentKeepalive');
    return actions;
  }
}
