// net/ipaddr beyond what the UAPI, wg-quick and allowed-IPs tests cover: the
// IPv4-mapped/IPv4-compatible distinction and the endpoint bytes built on it.
import { describe, expect, it } from 'vitest';
import { endpointBytes } from '../../src/device/endpoint.js';
import { formatIp, parseIp, unmap } from '../../src/net/ipaddr.js';

describe('unmap', () => {
  it.each([
    ['::ffff:1.2.3.4', '1.2.3.4'],
    ['0:0:0:0:0:FFFF:102:304', '1.2.3.4'],
    ['1.2.3.4', '1.2.3.4'],
    ['::1.2.3.4', '::102:304'], // IPv4-compatible is not IPv4
    ['::ffff:0:1.2.3.4', '::ffff:0:102:304'],
    ['2001:db8::1', '2001:db8::1'],
  ])('%s → %s', (text, want) => {
    expect(formatIp(unmap(parseIp(text)!))).toBe(want);
  });
});

describe('endpointBytes', () => {
  it('is the address bytes then the big-endian port', () => {
    expect([...endpointBytes({ address: '10.1.2.3', port: 0x1234 })]).toEqual([10, 1, 2, 3, 0x12, 0x34]);
    expect([...endpointBytes({ address: '2001:db8::1', port: 51820 })]).toEqual([0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 1, 0xca, 0x6c]);
  });

  it('reads an IPv4-mapped source as its IPv4 address and drops an IPv6 zone', () => {
    expect(endpointBytes({ address: '::ffff:10.1.2.3', port: 1 })).toEqual(endpointBytes({ address: '10.1.2.3', port: 1 }));
    expect(endpointBytes({ address: 'fe80::1%eth0', port: 1 })).toEqual(endpointBytes({ address: 'fe80::1', port: 1 }));
  });

  it('refuses what is not an IP address', () => {
    expect(() => endpointBytes({ address: 'example.com', port: 1 })).toThrow(TypeError);
  });
});
