/*
 * offload.h: TUN offload handling for the native packet loop (virtio_net_hdr, TSO/GSO, "GRO").
 *
 * The TUN is opened with IFF_TUN | IFF_NO_PI | IFF_VNET_HDR, TUNSETVNETHDRSZ =
 * sizeof(struct virtio_net_hdr) (10) and TUNSETOFFLOAD = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6.
 * Every read then starts with a virtio_net_hdr and may carry a partial checksum or a TCP
 * super-packet of up to 64 KiB; every write must start with a virtio_net_hdr.
 *
 * Everything here is pure: no I/O, no allocation, no N-API, no global state. The functions
 * are reentrant; a meshd_gro scratch struct belongs to one thread at a time.
 *
 * Byte order: IP/TCP fields are big-endian on the wire. virtio_net_hdr fields are read and
 * written in host order: without TUNSETVNETLE/TUNSETVNETBE a TUN uses the legacy virtio
 * layout, which is host-native (drivers/net/tun_vnet.h, tun_vnet_is_little_endian()).
 * Do not set TUNSETVNETLE/BE on the fd.
 *
 * Kernel requirements for a TCP GSO write (checked against 6.18: drivers/net/tun_vnet.h
 * tun_vnet_hdr_get(), include/linux/virtio_net.h __virtio_net_hdr_to_skb()):
 *   gso_type   VIRTIO_NET_HDR_GSO_TCPV4 (1) or _TCPV6 (4); the ECN bit (0x80) only if CWR
 *              is set in the header (we never coalesce CWR segments, so never set it)
 *   gso_size   payload bytes per segment; != 0 and != GSO_BY_FRAGS (0xFFFF); the packet is
 *              treated as GSO only if its payload is larger than gso_size
 *   flags      VIRTIO_NET_HDR_F_NEEDS_CSUM (CHECKSUM_PARTIAL); without it the kernel
 *              flow-dissects the packet instead
 *   csum_start offset of the TCP header: >= 20 (IPv4) / >= 40 (IPv6)
 *   csum_offset 16 (offsetof(struct tcphdr, check)), else -EINVAL for TCP GSO
 *   hdr_len    a linear-copy hint, raised to csum_start + csum_offset + 2 if smaller; must not
 *              exceed the packet length (else the write fails with EINVAL)
 *   TCP check  the folded, NOT complemented, pseudo-header sum (RFC 9293 3.1 / RFC 8200 8.1)
 *              over the super-packet's whole TCP length, as __tcp_v4_send_check() leaves it:
 *              tcp_gso_segment() adjusts it by the length delta for each segment.
 * A write is copied into a fresh skb (no zerocopy for write()/writev()), whose page frags
 * (at most MAX_SKB_FRAGS, each up to PAGE_SIZE << PAGE_ALLOC_COSTLY_ORDER) hold far more
 * than 64 KiB, so the kernel imposes no segment-count limit on a GSO write; iovecs are
 * limited only by UIO_MAXIOV (1024) per writev(). The limit that matters is 16-bit IP
 * lengths: a super-packet is capped at MESHD_GRO_MAX_IP_LEN bytes.
 *
 * DATA_VALID is ignored on TUN writes: tun_get_user() hands the header only to
 * virtio_net_hdr_tnl_to_skb()/virtio_net_hdr_to_skb(), which never read that flag (only the
 * virtio_net guest driver maps it to CHECKSUM_UNNECESSARY). It is therefore never set; see
 * meshd_offload_coalesce() for what that means for checksum verification.
 */
#ifndef MESHD_OFFLOAD_H
#define MESHD_OFFLOAD_H

#include <linux/virtio_net.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Older uapi headers lack these (Linux 4.18+, include/uapi/linux/virtio_net.h). */
#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif

#define MESHD_VNET_HDR_LEN ((size_t)sizeof(struct virtio_net_hdr)) /* 10 */

/* meshd_offload_complete_csum(): the packet is a GSO super-packet; use meshd_offload_split(). */
#define MESHD_OFFLOAD_NEEDS_SPLIT 1

/* Most packets meshd_offload_coalesce() takes per call. */
#define MESHD_GRO_BATCH_MAX 128u
/* Largest coalesced IP packet: IPv4 total length and IPv6 payload length are 16 bits. */
#define MESHD_GRO_MAX_IP_LEN 65535u

/* ---- Internet checksum (RFC 1071; incremental update RFC 1624) ----
 * A "partial" sum is the folded 16-bit one's complement sum, not complemented, as a host
 * integer with the value a big-endian load of the checksum field would give. Partials add
 * with meshd_csum_add(); the checksum to store is ~partial (written big-endian). */

/* One's complement sum of len bytes at data (an odd tail byte is padded with zero, RFC 1071
 * 4.1), added to the partial sum `initial`. Any alignment. 8 bytes per step into a 64-bit
 * accumulator. */
uint16_t meshd_csum_partial(const void *data, size_t len, uint16_t initial);

/* a + b in one's complement arithmetic. */
static inline uint16_t meshd_csum_add(uint16_t a, uint16_t b)
{
  uint32_t s = (uint32_t)a + b;
  return (uint16_t)((s & 0xffff) + (s >> 16));
}

/* Partial sum of the TCP/UDP pseudo-header: addr_len 4 (RFC 9293 3.1: src, dst, zero, proto,
 * 16-bit length) or 16 (RFC 8200 8.1: src, dst, 32-bit length, zeros, next header). */
uint16_t meshd_csum_pseudo(const uint8_t *src, const uint8_t *dst, size_t addr_len,
                           uint8_t proto, uint32_t l4_len);

/* RFC 1624 eqn. 3: checksum field value after a 16-bit word covered by it changes from
 * old_word to new_word: HC' = ~(~HC + ~m + m'). */
uint16_t meshd_csum_replace16(uint16_t check, uint16_t old_word, uint16_t new_word);

/* ---- TUN read side ---- */

/*
 * meshd_offload_split: turn one TUN read (hdr + pkt[0..len)) into plain IP packets with
 * complete IPv4 header checksums and TCP/UDP checksums. Segment i is written at
 * out + i * stride, its length in seg_lens[i]; `out` must not overlap `pkt`.
 * Returns the number of segments (>= 1), or
 *   -EINVAL  malformed or inconsistent header/packet (unknown flag bits, NEEDS_CSUM together
 *            with DATA_VALID, UDP/USO or unknown gso_type, gso_size 0, csum_start/csum_offset
 *            out of range or disagreeing with the parsed TCP header, IP version not matching
 *            gso_type, IP length field != len, IPv4 fragment or not TCP, IPv6 extension
 *            headers in a GSO packet, TCP data offset < 5 or past len)
 *   -ENOSPC  more than max_segs segments, or a segment longer than stride.
 * Never reads pkt beyond len, whatever the header says; never writes beyond
 * out + (segments - 1) * stride + seg_lens[last].
 *
 * Cases:
 *   GSO_NONE, flags 0 or DATA_VALID: copied through unchanged.
 *   GSO_NONE, NEEDS_CSUM: copied, then the checksum at csum_start + csum_offset is completed
 *     over csum_start..len (the field holds the pseudo-header sum, which is included).
 *   GSO_TCPV4 / GSO_TCPV6 (ECN bit allowed): segmented at gso_size payload bytes, as
 *     tcp_gso_segment()/inet_gso_segment() would: headers copied; IPv4 total length, ID
 *     (first ID + i), header checksum; IPv6 payload length; TCP seq advanced by i * gso_size;
 *     FIN and PSH kept only on the last segment, CWR only on the first; full TCP checksum.
 *     hdr_len is ignored (a hint that may span the whole first segment); the headers are
 *     parsed from the packet. A GSO packet with no payload yields its headers as 1 segment.
 */
int meshd_offload_split(const struct virtio_net_hdr *hdr, const uint8_t *pkt, size_t len,
                        uint8_t *out, size_t stride, size_t max_segs, uint32_t *seg_lens);

/*
 * meshd_offload_complete_csum: the in-place fast path for a non-GSO read. Returns 0 when pkt
 * is now a complete plain packet (unchanged, or its partial checksum completed as in
 * meshd_offload_split), MESHD_OFFLOAD_NEEDS_SPLIT for a TCPV4/TCPV6 super-packet (pkt left
 * unchanged), or -EINVAL for anything meshd_offload_split would reject with -EINVAL.
 */
int meshd_offload_complete_csum(const struct virtio_net_hdr *hdr, uint8_t *pkt, size_t len);

/* ---- TUN write side ("GRO") ---- */

/* One decrypted IP packet. data[-MESHD_VNET_HDR_LEN .. -1] must be writable headroom. */
typedef struct meshd_pkt {
  uint8_t *data;
  uint32_t len;
} meshd_pkt;

/* One TUN write: writev(fd, iov + iov_first, iov_count), expected to return `bytes`. It
 * carries pkt_count packets of the batch, starting with pkts[pkt_first]. */
typedef struct meshd_offload_write {
  uint32_t iov_first, iov_count;
  uint32_t pkt_first, pkt_count;
  size_t bytes; /* virtio_net_hdr included */
} meshd_offload_write;

/* Scratch for meshd_offload_coalesce(): allocate once per thread (about 6 KiB; it may live on
 * a thread's stack). Needs no initialisation; contents are private. */
typedef struct meshd_gro_item {
  uint32_t hash;
  uint32_t seq_next; /* TCP seq the next segment must carry */
  uint32_t ip_len;   /* IP length of the super-packet so far */
  uint16_t first, last, count;
  uint16_t gso_size; /* payload bytes of the first segment */
  uint16_t ip_id;    /* IPv4 ID of the first segment */
  uint8_t iph_len, tcph_len;
  uint8_t v6, open, verified;
} meshd_gro_item;

typedef struct meshd_gro {
  meshd_gro_item items[MESHD_GRO_BATCH_MAX];
  uint16_t next[MESHD_GRO_BATCH_MAX];     /* next packet of the same item */
  uint16_t slots[2 * MESHD_GRO_BATCH_MAX]; /* flow hash table: item index + 1, 0 = empty */
} meshd_gro;

/*
 * meshd_offload_coalesce: plan the TUN writes for a batch of n (<= MESHD_GRO_BATCH_MAX)
 * decrypted IP packets. Fills writes[] (in order of each write's first packet) and iov[]
 * (each packet uses exactly one iovec, so n iovecs in all) and returns the number of writes,
 * or -EINVAL (n > MESHD_GRO_BATCH_MAX, NULL pointers), -ENOSPC (iov_cap < n or
 * writes_cap < n). With enough room it cannot fail: unusual packets just pass through.
 *
 * Each write's first iovec starts in the headroom: the virtio_net_hdr is written into
 * data[-10..-1] of its first packet, so that iovec covers header + whole first packet.
 *   single packet: an all-zero virtio_net_hdr (no GSO, no offload; the kernel checks the
 *     packet like any other). Not DATA_VALID: a TUN write ignores it (see top of file).
 *   super-packet: segments 2..k contribute iovecs of their payloads only (no copy). The
 *     first packet's headers are patched in place: IPv4 total length + header checksum
 *     (RFC 1624), or IPv6 payload length; PSH/FIN of the last segment; TCP checksum field
 *     = pseudo-header partial sum over the whole TCP length. virtio_net_hdr: NEEDS_CSUM,
 *     gso_type TCPV4/TCPV6, gso_size = first payload size, hdr_len = IP + TCP header length,
 *     csum_start = IP header length, csum_offset = 16.
 * Nothing else is modified. The packets must stay untouched until the writes are done.
 *
 * Which packets coalesce (the kernel's tcp_gro_receive()/inet_gro_receive() rules, plus an
 * order rule): same IP version, addresses and ports; IPv4 without options or fragmentation,
 * header checksum valid, total length == len, same TOS, TTL and DF, and when DF is clear
 * consecutive IDs (a resegmenting kernel assigns first ID + i); IPv6 with TCP as next header
 * (no extension headers), payload length == len - 40, same traffic class, flow label and hop
 * limit; TCP with ACK set, no SYN/RST/URG/CWR, same header length and options bytes, same
 * ACK number, window, flags and ECE, seq == previous seq + previous payload, payload > 0 and
 * equal to the first's except that the last may be smaller; PSH or FIN only on the last.
 * Coalescing is by flow across the whole batch, but per flow only the newest group may grow:
 * any packet of the flow that cannot join closes it, so a flow's packets stay in order.
 * Each coalesced segment's TCP checksum is verified first (one pass over it), because
 * NEEDS_CSUM makes the skb CHECKSUM_PARTIAL, which the receiving stack takes as verified
 * (skb_csum_unnecessary()): a segment with a bad checksum is written alone, and the kernel
 * drops it. The AEAD proves a packet is what the peer sent, not that the peer's checksum is
 * right, and DATA_VALID cannot be used to trust it anyway.
 */
int meshd_offload_coalesce(meshd_gro *gro, const meshd_pkt *pkts, size_t n, struct iovec *iov,
                           size_t iov_cap, meshd_offload_write *writes, size_t writes_cap);

#endif /* MESHD_OFFLOAD_H */
