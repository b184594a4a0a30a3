// The inbound path (kernel receive.c). Transport data is handled at once;
// handshake messages and cookie replies go through a bounded queue so that a
// flood of them can be recognised ("under load") and answered with cookies
// instead of Diffie-Hellman work. Nothing here throws on remote input: every
// bad packet is a counted drop.
import { beginSession, consumeInitiation, consumeResponse } from '../noise/handshake.js';
import { openTransport } from '../noise/transport.js';
import {
  KEEPALIVE_TIMEOUT, MAX_QUEUED_INCOMING_HANDSHAKES, MESSAGE_COOKIE_REPLY, MESSAGE_HANDSHAKE_INITIATION,
  MESSAGE_HANDSHAKE_RESPONSE, MESSAGE_TRANSPORT_DATA, REJECT_AFTER_TIME, REKEY_TIMEOUT, UNDER_LOAD_QUEUE_THRESHOLD,
} from '../wire/constants.js';
import { classify, COOKIE_REPLY, readCounter, readIndex, TRANSPORT } from '../wire/messages.js';
import type { Device } from './device.js';
import { endpointBytes, sameEndpoint, type Endpoint } from './endpoint.js';
import type { Peer } from './peer.js';
import type { Keypair } from '../noise/keypair.js';
import { installSession, sendHandshakeInitiation, sendHandshakeResponse, sendKeepalive, sendStaged } from './send.js';

/** Hysteresis: once under load, stay so for a second (wireguard-go). */
const UNDER_LOAD_AFTER = 1000;

/**
 * A UDP datagram arrived from `from`. The buffer becomes the device's: transport
 * data is decrypted in place, so the caller must not reuse it.
 */
export function receiveDatagram(dev: Device, packet: Uint8Array, from: Endpoint): void {
  const type = classify(packet);
  if (typeof type === 'string') {
    dev.drop(type);
    return;
  }
  if (type === MESSAGE_TRANSPORT_DATA) {
    receiveTransport(dev, packet, from);
    return;
  }
  if (dev.handshakeQueue.length >= MAX_QUEUED_INCOMING_HANDSHAKES) {
    dev.drop('handshakeQueueFull');
    return;
  }
  // The queue holds a copy: the adapter may reuse its receive buffer.
  dev.handshakeQueue.push({ packet: Uint8Array.prototype.slice.call(packet), from });
}

/** Processes up to `budget` queued handshake messages; returns how many remain. */
export function processHandshakeQueue(dev: Device, budget = Infinity): number {
  let n = 0;
  while (dev.handshakeQueue.length && n < budget) {
    const now = dev.clock.now();
    // Decided per message from the backlog still waiting (kernel: queue length ≥ 1/8 of its bound).
    if (dev.handshakeQueue.length >= UNDER_LOAD_QUEUE_THRESHOLD) dev.underLoadUntil = now + UNDER_LOAD_AFTER;
    const { packet, from } = dev.handshakeQueue.shift()!;
    receiveHandshake(dev, packet, from, now < dev.underLoadUntil);
    n++;
  }
  return dev.handshakeQueue.length;
}

function receiveHandshake(dev: Device, packet: Uint8Array, from: Endpoint, underLoad: boolean): void {
  const now = dev.clock.now();
  const type = packet[0];
  if (type === MESSAGE_COOKIE_REPLY) {
    const entry = dev.indexTable.lookup(readIndex(packet, COOKIE_REPLY.receiver));
    if (!entry || !entry.peer.cookie.consumeReply(packet, now)) dev.drop('unexpectedCookie');
    return;
  }
  if (dev.identity === null) {
    dev.drop('unknownPeer');
    return;
  }
  const source = endpointBytes(from);
  const verdict = dev.cookieChecker.validate(packet, source, underLoad, now);
  if (verdict === 'invalidMac1') {
    dev.drop('badMac1');
    return;
  }
  if (verdict === 'invalidMac2') {
    // A genuine sender will retry with mac2 once it has this cookie.
    dev.bind.send(dev.cookieChecker.createReply(packet, source, now), from);
    dev.drop('cookieSent');
    return;
  }
  if (underLoad && !dev.ratelimiter.allow(source.subarray(0, source.length - 2), now)) {
    dev.drop('rateLimited');
    return;
  }

  if (type === MESSAGE_HANDSHAKE_INITIATION) {
    const peer = consumeInitiation(packet, dev.identity, (s) => dev.peer(s), now);
    if (typeof peer === 'string') {
      dev.drop(peer);
      return;
    }
    // The initiation we may have had in flight is void now.
    dev.freeHandshakeIndex(peer);
    authenticated(dev, peer, packet.length, from, now);
    sendHandshakeResponse(dev, peer);
    dev.log('handshake.initiationConsumed', { peer: peer.publicKey.toString('base64') });
    return;
  }
  if (type === MESSAGE_HANDSHAKE_RESPONSE) {
    const peer = consumeResponse<Peer>(packet, dev.identity, (i) => {
      const e = dev.indexTable.lookup(i);
      return e && e.keypair === null ? e.peer : undefined;
    });
    if (typeof peer === 'string') {
      dev.drop(peer);
      return;
    }
    authenticated(dev, peer, packet.length, from, now);
    const kp = beginSession(peer.handshake, now);
    if (kp) {
      installSession(dev, peer, kp);
      handshakeComplete(dev, peer);
      // Confirms the session to the responder at once (or sends what waited for it).
      sendKeepalive(dev, peer);
    }
  }
}

/** Bookkeeping common to every authenticated packet: roaming, counters, timers. */
function authenticated(dev: Device, peer: Peer, length: number, from: Endpoint, now: number): void {
  // §6.5 roaming: the endpoint follows the latest authenticated packet.
  if (!sameEndpoint(peer.endpoint, from)) peer.endpoint = from;
  peer.rxBytes += length;
  peer.timers.anyAuthenticatedPacketReceived();
  peer.timers.anyAuthenticatedPacketTraversal(now);
}

function handshakeComplete(dev: Device, peer: Peer): void {
  peer.timers.handshakeComplete();
  peer.sentLastMinuteHandshake = false;
  peer.lastHandshakeWall = dev.clock.wall();
  peer.handshakesCompleted++;
  dev.log('handshake.complete', { peer: peer.publicKey.toString('base64') });
}

function receiveTransport(dev: Device, packet: Uint8Array, from: Endpoint): void {
  const entry = dev.indexTable.lookup(readIndex(packet, TRANSPORT.receiver));
  const kp = entry?.keypair;
  if (!entry || !kp) {
    dev.drop('unknownIndex');
    return;
  }
  const peer = entry.peer;
  const now = dev.clock.now();
  const counter = readCounter(packet);
  if (!kp.canReceive(now) || counter < 0) {
    dev.drop('keypairExpired');
    return;
  }
  const plaintext = openTransport(kp, packet, counter);
  if (plaintext === null) {
    dev.drop('decryptFailed');
    return;
  }
  // Only after authentication: a forged counter must not move the window.
  if (!kp.replay.validate(counter)) {
    dev.drop('replayedCounter');
    return;
  }
  authenticated(dev, peer, packet.length, from, now);
  peer.rxPackets++;
  confirmSession(dev, peer, kp);
  keepKeyFreshReceiving(dev, peer);
  if (plaintext.length === 0) return; // keepalive

  peer.timers.dataReceived(now);
  const inner = innerPacket(plaintext);
  if (inner === null) {
    dev.drop('invalidInnerPacket');
    return;
  }
  // Cryptokey routing, receive side: the source must route back to this peer.
  if (dev.allowedIps.lookupPacketSource(inner) !== peer) {
    dev.drop('allowedIpsMismatch');
    return;
  }
  // Zero trust: the policy decides, on what the peer actually sent.
  if (dev.filter !== null) {
    const verdict = dev.filter.inbound(inner, now);
    if (verdict !== 'accept') {
      dev.drop(verdict === 'malformed' ? 'invalidInnerPacket' : 'filtered');
      return;
    }
  }
  if (!dev.tun.write(inner)) dev.drop('tunWriteFailed');
}

/**
 * A data packet authenticated under `kp`: if it is the responder's pending
 * next session, that confirms it (§5.4.4) and what waited for it goes out.
 */
export function confirmSession(dev: Device, peer: Peer, kp: Keypair): void {
  const { confirmed, dropped } = peer.keypairs.receivedWith(kp);
  dev.releaseKeypairs(dropped);
  if (!confirmed) return;
  dev.offload?.syncPeer(peer);
  handshakeComplete(dev, peer);
  sendStaged(dev, peer);
}

/**
 * §6.2: the initiator starts a new handshake if its session is about to be
 * rejected and nothing renewed it, once per session ("last minute").
 */
export function keepKeyFreshReceiving(dev: Device, peer: Peer): void {
  const kp = peer.keypairs.current;
  if (!kp || !kp.isInitiator || peer.sentLastMinuteHandshake) return;
  if (dev.clock.now() - kp.created >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT) {
    peer.sentLastMinuteHandshake = true;
    sendHandshakeInitiation(dev, peer, false);
  }
}

/**
 * The IP packet inside a padded plaintext, trimmed to the length its header
 * states, or null when it is not a well-formed IPv4/IPv6 packet.
 */
export function innerPacket(p: Buffer): Buffer | null {
  if (p.length < 1) return null;
  const version = p[0] >> 4;
  if (version === 4) {
    if (p.length < 20) return null;
    const ihl = (p[0] & 0x0f) * 4;
    const total = (p[2] << 8) | p[3];
    if (ihl < 20 || total < ihl || total > p.length) return null;
    return p.subarray(0, total);
  }
  if (version === 6) {
    if (p.length < 40) return null;
    const total = 40 + ((p[4] << 8) | p[5]);
    if (total > p.length) return null;
    return p.subarray(0, total);
  }
  return null;
}

/** Runs the timers of every peer that are due. */
export function tick(dev: Device): void {
  const now = dev.clock.now();
  for (const peer of dev.peers.values()) {
    for (const action of peer.timers.expire(now)) {
      switch (action) {
        case 'retransmitHandshake':
          sendHandshakeInitiation(dev, peer, true);
          break;
        case 'handshakeGaveUp':
          peer.staged.length = 0;
          dev.log('handshake.gaveUp', { peer: peer.publicKey.toString('base64') });
          break;
        case 'sendKeepalive':
        case 'persistentKeepalive':
          sendKeepalive(dev, peer);
          break;
        case 'newHandshake':
          sendHandshakeInitiation(dev, peer, false);
          break;
        case 'zeroKeyMaterial':
          dev.clearKeypairs(peer);
          dev.freeHandshakeIndex(peer);
          peer.handshake.zero();
          break;
      }
    }
  }
}
