// The outbound path (kernel send.c): a packet from the TUN is routed to a peer
// by its destination (cryptokey routing), staged, and sent under the current
// session, or triggers a handshake when there is none. Also the senders of
// handshake messages and keepalives.
import { beginSession, createInitiation, createResponse } from '../noise/handshake.js';
import { sealTransport } from '../noise/transport.js';
import { REKEY_AFTER_MESSAGES_JS, REKEY_AFTER_TIME, REKEY_TIMEOUT } from '../wire/constants.js';
import type { Device } from './device.js';
import type { Peer } from './peer.js';

const EMPTY = new Uint8Array(0);

/** An IP packet read from the TUN. Returns false when it was dropped. */
export function sendPacket(dev: Device, packet: Uint8Array): boolean {
  const peer = dev.allowedIps.lookupPacketDestination(packet);
  if (peer === undefined) {
    dev.drop('noRoute');
    return false;
  }
  if (peer.endpoint === null) {
    dev.drop('noEndpoint');
    return false;
  }
  dev.filter?.outbound(packet, dev.clock.now());
  // Fast path: a usable session and nothing queued ahead — seal straight from
  // the caller's buffer, which may be a view into the TUN reader's ring.
  const kp = peer.keypairs.current;
  if (peer.staged.length === 0 && kp !== null && kp.canSend(dev.clock.now())) {
    peer.staged.push(packet);
    sendStaged(dev, peer);
    return true;
  }
  // Otherwise it waits for a handshake and must outlive the caller's buffer.
  if (!peer.stage(Uint8Array.prototype.slice.call(packet))) dev.drop('stagedQueueFull');
  sendStaged(dev, peer);
  return true;
}

/** Sends a keepalive, or whatever is staged, which serves the same purpose. */
export function sendKeepalive(dev: Device, peer: Peer): void {
  if (peer.staged.length === 0) peer.staged.push(EMPTY);
  sendStaged(dev, peer);
}

/**
 * Encrypts and sends every staged packet under the current keypair. Without
 * a usable one the packets stay staged and a handshake is started.
 */
export function sendStaged(dev: Device, peer: Peer): void {
  if (peer.staged.length === 0 || peer.endpoint === null) return;
  const now = dev.clock.now();
  const kp = peer.keypairs.current;
  if (kp === null || !kp.canSend(now)) {
    sendHandshakeInitiation(dev, peer, false);
    return;
  }
  const endpoint = peer.endpoint;
  let sentData = false;
  let sent = 0;
  if (dev.offload !== null) {
    // The native datapath holds the send counter: it seals these.
    sent = dev.offload.sendPlain(peer, peer.staged);
    for (const p of peer.staged.splice(0, sent)) if (p.length) sentData = true;
  }
  while (dev.offload === null && peer.staged.length) {
    // Counter exhaustion mid-batch: keep the rest for the next session.
    if (!kp.canSend(now)) break;
    const plaintext = peer.staged.shift()!;
    const msg = sealTransport(kp, plaintext, dev.mtu);
    dev.bind.send(msg, endpoint);
    peer.txBytes += msg.length;
    peer.txPackets++;
    sent++;
    if (plaintext.length) sentData = true;
  }
  if (sent) {
    peer.timers.anyAuthenticatedPacketTraversal(now);
    peer.timers.anyAuthenticatedPacketSent();
    if (sentData) peer.timers.dataSent(now);
  }
  keepKeyFreshSending(dev, peer);
  if (peer.staged.length) sendHandshakeInitiation(dev, peer, false);
}

/** §6.2: the initiator rekeys after REKEY_AFTER_TIME; either side after REKEY_AFTER_MESSAGES. */
export function keepKeyFreshSending(dev: Device, peer: Peer): void {
  const kp = peer.keypairs.current;
  if (kp === null || !kp.sendingValid) return;
  const now = dev.clock.now();
  if (kp.sendingCounter > REKEY_AFTER_MESSAGES_JS || (kp.isInitiator && now - kp.created >= REKEY_AFTER_TIME)) {
    sendHandshakeInitiation(dev, peer, false);
  }
}

/**
 * Sends a handshake initiation, at most one per REKEY_TIMEOUT (§6.4). A retry
 * keeps the attempt count; a fresh attempt resets it.
 */
export function sendHandshakeInitiation(dev: Device, peer: Peer, isRetry: boolean): void {
  if (!isRetry) peer.timers.resetAttempts();
  if (dev.identity === null || peer.endpoint === null || !dev.up) return;
  const now = dev.clock.now();
  if (now - peer.lastSentHandshake < REKEY_TIMEOUT) return;
  const msg = createInitiation(peer.handshake, dev.identity, dev.clock.wall(), () => dev.allocateHandshakeIndex(peer), dev.ephemeral);
  if (typeof msg === 'string') {
    dev.drop(msg);
    return;
  }
  peer.lastSentHandshake = now;
  transmitHandshake(dev, peer, msg, now);
  peer.timers.handshakeInitiated(now);
  dev.log('handshake.initiationSent', { peer: peer.publicKey.toString('base64'), retry: isRetry });
}

/** Answers a consumed initiation and installs the (unconfirmed) responder session. */
export function sendHandshakeResponse(dev: Device, peer: Peer): void {
  if (peer.endpoint === null) return;
  const now = dev.clock.now();
  const msg = createResponse(peer.handshake, () => dev.allocateHandshakeIndex(peer), dev.ephemeral);
  if (typeof msg === 'string') {
    dev.drop(msg);
    return;
  }
  const kp = beginSession(peer.handshake, now);
  if (kp) installSession(dev, peer, kp);
  transmitHandshake(dev, peer, msg, now);
}

/** Adds MAC1/MAC2 and sends a handshake message; it counts as an authenticated packet sent. */
function transmitHandshake(dev: Device, peer: Peer, msg: Buffer, now: number): void {
  peer.cookie.addMacs(msg, now);
  peer.timers.anyAuthenticatedPacketTraversal(now);
  peer.timers.anyAuthenticatedPacketSent();
  dev.bind.send(msg, peer.endpoint!);
  peer.txBytes += msg.length;
}

/** Puts a new session into the rotation and the index table (its index was the handshake's). */
export function installSession(dev: Device, peer: Peer, kp: import('../noise/keypair.js').Keypair): void {
  dev.indexTable.replace(kp.localIndex, { peer, keypair: kp });
  peer.handshakeIndex = 0;
  dev.releaseKeypairs(peer.keypairs.add(kp));
  peer.timers.sessionDerived(dev.clock.now());
  dev.offload?.syncPeer(peer);
}
