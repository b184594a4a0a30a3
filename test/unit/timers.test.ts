// The per-peer timer state machine with a fake clock: each event arms or
// cancels exactly the timers the paper (§6) and the kernel's timers.c say.
import { describe, expect, it } from 'vitest';
import { PeerTimers } from '../../src/device/timers.js';
import { KEEPALIVE_TIMEOUT, MAX_TIMER_HANDSHAKES, REJECT_AFTER_TIME, REKEY_TIMEOUT } from '../../src/wire/constants.js';

const t0 = 100_000;

describe('PeerTimers', () => {
  it('retransmits a handshake after REKEY_TIMEOUT plus jitter, then gives up after MAX_TIMER_HANDSHAKES retries', () => {
    const t = new PeerTimers(() => 100);
    t.handshakeInitiated(t0);
    expect(t.nextDeadline()).toBe(t0 + REKEY_TIMEOUT + 100);
    expect(t.expire(t0 + REKEY_TIMEOUT + 99)).toEqual([]);
    let now = t0;
    let retries = 0;
    for (let i = 0; i < 100; i++) {
      now = t.nextDeadline()!;
      const a = t.expire(now);
      if (a.includes('handshakeGaveUp')) break;
      expect(a).toEqual(['retransmitHandshake']);
      retries++;
      t.handshakeInitiated(now); // the device sends the retry
    }
    expect(retries).toBe(MAX_TIMER_HANDSHAKES + 1);
    // Giving up schedules wiping of whatever keys remain.
    expect(t.nextDeadline()).toBe(now + 3 * REJECT_AFTER_TIME);
  });

  it('handshakeComplete cancels the retransmission and resets the attempts', () => {
    const t = new PeerTimers(() => 0);
    t.handshakeInitiated(t0);
    t.expire(t0 + REKEY_TIMEOUT);
    expect(t.handshakeAttempts).toBe(1);
    t.handshakeInitiated(t0 + REKEY_TIMEOUT);
    t.handshakeComplete();
    expect(t.handshakeAttempts).toBe(0);
    expect(t.pending('retransmitHandshake')).toBe(false);
  });

  it('owes a keepalive KEEPALIVE_TIMEOUT after data received, cancelled by sending anything', () => {
    const t = new PeerTimers(() => 0);
    t.dataReceived(t0);
    expect(t.expire(t0 + KEEPALIVE_TIMEOUT - 1)).toEqual([]);
    expect(t.expire(t0 + KEEPALIVE_TIMEOUT)).toEqual(['sendKeepalive']);
    t.dataReceived(t0);
    t.anyAuthenticatedPacketSent();
    expect(t.expire(t0 + KEEPALIVE_TIMEOUT)).toEqual([]);
  });

  it('sends one more keepalive when data kept arriving while one was due', () => {
    const t = new PeerTimers(() => 0);
    t.dataReceived(t0);
    t.dataReceived(t0 + 1000);
    expect(t.expire(t0 + KEEPALIVE_TIMEOUT)).toEqual(['sendKeepalive']);
    expect(t.expire(t0 + 2 * KEEPALIVE_TIMEOUT)).toEqual(['sendKeepalive']);
    expect(t.nextDeadline()).toBeNull();
  });

  it('starts a new handshake when data sent gets no answer for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT', () => {
    const t = new PeerTimers(() => 7);
    t.dataSent(t0);
    t.dataSent(t0 + 5000); // does not push the deadline
    expect(t.nextDeadline()).toBe(t0 + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + 7);
    expect(t.expire(t0 + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + 7)).toEqual(['newHandshake']);
    t.dataSent(t0);
    t.anyAuthenticatedPacketReceived();
    expect(t.nextDeadline()).toBeNull();
  });

  it('wipes key material 3 × REJECT_AFTER_TIME after the last session was derived', () => {
    const t = new PeerTimers(() => 0);
    t.sessionDerived(t0);
    t.sessionDerived(t0 + 1000);
    expect(t.expire(t0 + 3 * REJECT_AFTER_TIME)).toEqual([]);
    expect(t.expire(t0 + 1000 + 3 * REJECT_AFTER_TIME)).toEqual(['zeroKeyMaterial']);
  });

  it('persistent keepalive restarts on every authenticated packet, only when configured', () => {
    const t = new PeerTimers(() => 0);
    t.anyAuthenticatedPacketTraversal(t0);
    expect(t.nextDeadline()).toBeNull();
    t.persistentKeepaliveInterval = 25;
    t.anyAuthenticatedPacketTraversal(t0);
    t.anyAuthenticatedPacketTraversal(t0 + 10_000);
    expect(t.expire(t0 + 25_000)).toEqual([]);
    expect(t.expire(t0 + 35_000)).toEqual(['persistentKeepalive']);
  });

  it('a disabled (removed) peer arms nothing and fires nothing', () => {
    const t = new PeerTimers(() => 0);
    t.dataSent(t0);
    t.stopAll();
    t.enabled = false;
    t.dataReceived(t0);
    t.handshakeInitiated(t0);
    expect(t.nextDeadline()).toBeNull();
    expect(t.expire(t0 + 10 * REJECT_AFTER_TIME)).toEqual([]);
  });
});
