// Every way a received packet can be dropped, by a stable name. The receive
// path returns one of these instead of throwing, and the device counts them.
export const DROP_REASONS = [
  'truncated', // shorter than any message
  'badType', // unknown message type
  'reservedNonZero', // reserved header bytes not zero
  'badLength', // wrong size for its type
  'badMac1', // MAC1 does not verify
  'badMac2', // MAC2 missing or wrong while under load
  'cookieSent', // under load without a cookie: answered with a cookie reply
  'rateLimited', // per-source handshake rate limit
  'handshakeQueueFull', // handshake backlog bound reached
  'unknownPeer', // initiation from a static key we do not know
  'decryptFailed', // AEAD authentication failed
  'replayedTimestamp', // initiation TAI64N not newer than the last one
  'initiationFlood', // more than INITIATIONS_PER_SECOND from one peer
  'lowOrderKey', // a DH produced all zeros
  'unknownIndex', // receiver index not in our table
  'unexpectedResponse', // response for a handshake not in the right state
  'unexpectedCookie', // cookie reply we did not ask for
  'keypairExpired', // session past REJECT_AFTER_TIME / REJECT_AFTER_MESSAGES
  'replayedCounter', // counter seen before or behind the window
  'invalidInnerPacket', // decrypted payload is not a well-formed IP packet
  'allowedIpsMismatch', // inner source not routed back to the sending peer
  'noRoute', // outbound packet whose destination no peer's allowed IPs hold
  'noEndpoint', // outbound packet for a peer whose address we do not know yet
  'stagedQueueFull', // outbound packet waiting for a handshake, queue full
  'tunWriteFailed', // the TUN refused the packet
  'filtered', // the packet filter denied it
  // Native datapath only (native/src/datapath.h DP_DROPS):
  'eventQueueFull', // a packet for JS (handshake, staging, filter verdict) met a full event queue
  'udpSendFailed', // the UDP socket refused a datagram
  'tunReadError', // reading the TUN failed
  'offloadError', // a TUN read with a malformed or oversized virtio-net header / segment
  'counterExhausted', // the session's send counter reached REJECT_AFTER_MESSAGES
] as const;

export type DropReason = (typeof DROP_REASONS)[number];

export class DropCounters {
  private readonly counts = new Map<DropReason, number>();
  add(reason: DropReason, n = 1): void {
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + n);
  }
  get(reason: DropReason): number {
    return this.counts.get(reason) ?? 0;
  }
  total(): number {
    let t = 0;
    for (const v of this.counts.values()) t += v;
    return t;
  }
  toJSON(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }
}
