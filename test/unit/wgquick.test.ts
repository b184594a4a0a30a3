import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, formatWgQuickConfig, parseWgQuickConfig, type WgQuickConfig } from '../../src/config/wgquick.js';
import { decodeKeyBase64, decodeKeyHex, encodeKeyBase64, encodeKeyHex, KeyFormatError } from '../../src/config/keys.js';
import { formatCidr } from '../../src/net/ipaddr.js';

// Keys made with wg genkey for these tests (the same as the UAPI fixtures).
const PRIV = 'WM39NO56xm7+ioSKGzw1fq59Pn8JvMvsiVUJaVxKBU0=';
const PRIV_PUB = '6TA/rGA6CgMnQoEINM7UN+p3MeIZWsUuWWAEq5if5E8='; // `wg pubkey` of PRIV
const PUB_A = 'kLiPTCt08y9zvxNQalXeoxJuyMu+7xLeDvY8s/OVMm0=';
const PUB_B = '1bpLTgKuXDQhzlsCfBweQPyBhDwMFwGjWPOW5KPDq1s=';
const PUB_C = 'U8CzhKgSMVT2OSwnzrub7njEpwMie8O6uftAtgcN+FI=';
const PSK = '5TJKwWMiqfoVnjerViP0gZm49Ha17V3/XE9TEca78Gk=';

const FULL = [
  '# meshd test interface', //                                   1
  '[Interface]', //                                              2
  `PrivateKey = ${PRIV}`, //                                     3
  'ListenPort=51820', //                                         4
  '  Address = 10.99.0.1/24, fd00::1/64  ', //                   5
  'address = 10.100.0.1 # a bare address is a host prefix', //   6
  'MTU = 1420', //                                               7
  'FwMark = 0x1234', //                                          8
  'DNS = 1.1.1.1, example.com', //                               9
  'PostUp = iptables -A FORWARD -i %i -j ACCEPT; echo up', //    10
  'SaveConfig = true', //                                        11
  '', //                                                         12
  '[Peer]', //                                                   13
  `PublicKey = ${PUB_A}`, //                                     14
  `PresharedKey = ${PSK}`, //                                    15
  'AllowedIPs = 10.99.0.2/32, fd00::/64', //                     16
  'AllowedIPs = 10.0.0.5/24', //                                 17
  'Endpoint = 192.0.2.2:51820', //                               18
  'PersistentKeepalive = 25', //                                 19
  '', //                                                         20
  '[peer]   # section names are case-insensitive too', //        21
  `publickey=${PUB_B}`, //                                       22
  'Endpoint = vpn.example.com:4500', //                          23
  'AllowedIPs = 0.0.0.0/0, ::/0', //                             24
  'PersistentKeepalive = off', //                                25
  '\t', //                                                       26
  '[Peer]', //                                                   27
  `PublicKey = ${PUB_C}`, //                                     28
  'Endpoint = [2001:DB8:0::1]:51820', //                         29
  'AllowedIPs =', //                                             30
].join('\n');

/** `wg showconf` output, read from a UAPI socket serving our formatGetResponse. */
const WG_SHOWCONF = `[Interface]
ListenPort = 51821
FwMark = 0x1234
PrivateKey = WM39NO56xm7+ioSKGzw1fq59Pn8JvMvsiVUJaVxKBU0=

[Peer]
PublicKey = kLiPTCt08y9zvxNQalXeoxJuyMu+7xLeDvY8s/OVMm0=
PresharedKey = 5TJKwWMiqfoVnjerViP0gZm49Ha17V3/XE9TEca78Gk=
AllowedIPs = 10.99.0.2/32, fd00::/64, ::ffff:1.2.3.4/128
Endpoint = [fe80::1%lo]:51821
PersistentKeepalive = 25

[Peer]
PublicKey = 1bpLTgKuXDQhzlsCfBweQPyBhDwMFwGjWPOW5KPDq1s=
`;

const b64 = decodeKeyBase64;

function errorOf(text: string, file = 'wg0.conf'): ConfigError {
  try {
    parseWgQuickConfig(text, file);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError, the config parsed');
}

const withoutLines = (cfg: WgQuickConfig) => ({ ...cfg, ignored: cfg.ignored.map(({ key, value }) => ({ key, value })) });

describe('parseWgQuickConfig', () => {
  it('reads a full config', () => {
    const cfg = parseWgQuickConfig(FULL, 'wg0.conf');
    expect(cfg.interface.privateKey).toEqual(b64(PRIV));
    expect(cfg.interface.listenPort).toBe(51820);
    expect(cfg.interface.fwmark).toBe(0x1234);
    expect(cfg.interface.mtu).toBe(1420);
    // Host bits kept: these are the interface's own addresses.
    expect(cfg.interface.addresses.map(formatCidr)).toEqual(['10.99.0.1/24', 'fd00::1/64', '10.100.0.1/32']);
    expect(cfg.ignored).toEqual([
      { key: 'DNS', value: '1.1.1.1, example.com', line: 9 },
      { key: 'PostUp', value: 'iptables -A FORWARD -i %i -j ACCEPT; echo up', line: 10 },
      { key: 'SaveConfig', value: 'true', line: 11 },
    ]);
    expect(cfg.peers).toHaveLength(3);
    const [a, b, c] = cfg.peers;
    expect(a.publicKey).toEqual(b64(PUB_A));
    expect(a.presharedKey).toEqual(b64(PSK));
    expect(a.allowedIps.map(formatCidr)).toEqual(['10.99.0.2/32', 'fd00::/64', '10.0.0.0/24']);
    expect(a.endpoint).toEqual({ host: '192.0.2.2', port: 51820, family: 4 });
    expect(a.persistentKeepalive).toBe(25);
    expect(b.publicKey).toEqual(b64(PUB_B));
    expect(b.presharedKey).toBeUndefined();
    expect(b.endpoint).toEqual({ host: 'vpn.example.com', port: 4500, family: null });
    expect(b.allowedIps.map(formatCidr)).toEqual(['0.0.0.0/0', '::/0']);
    expect(b.persistentKeepalive).toBe(0);
    expect(c.endpoint).toEqual({ host: '2001:db8::1', port: 51820, family: 6 });
    expect(c.allowedIps).toEqual([]);
    expect(c.persistentKeepalive).toBeUndefined();
  });

  it('reads what wg showconf writes', () => {
    const cfg = parseWgQuickConfig(WG_SHOWCONF, 'showconf');
    expect(cfg.interface).toEqual({ privateKey: b64(PRIV), listenPort: 51821, fwmark: 0x1234, addresses: [] });
    expect(cfg.peers[0].endpoint).toEqual({ host: 'fe80::1%lo', port: 51821, family: 6 });
    expect(cfg.peers[0].allowedIps.map(formatCidr)).toEqual(['10.99.0.2/32', 'fd00::/64', '::ffff:1.2.3.4/128']);
    expect(cfg.peers[1]).toEqual({ publicKey: b64(PUB_B), allowedIps: [] });
    expect(cfg.ignored).toEqual([]);
  });

  it('tolerates CRLF, a byte-order mark, tabs and no final newline', () => {
    const cfg = parseWgQuickConfig(`\uFEFF[Interface]\r\n\tPrivateKey\t=\t${PRIV}\t\r\nlistenport = 1`, 'x.conf');
    expect(cfg.interface.listenPort).toBe(1);
  });

  it('a config with only an interface has no peers', () => {
    expect(parseWgQuickConfig(`[Interface]\nPrivateKey = ${PRIV}\n`, 'x').peers).toEqual([]);
  });

  it('FwMark: off, decimal and 0x-hex; PersistentKeepalive: off or seconds', () => {
    const fw = (v: string) => parseWgQuickConfig(`[Interface]\nPrivateKey = ${PRIV}\nFwMark = ${v}`, 'x').interface.fwmark;
    expect([fw('off'), fw('OFF'), fw('0'), fw('51820'), fw('0xffffffff'), fw('0XCA6C'.replace('X', 'x'))]).toEqual([0, 0, 0, 51820, 0xffffffff, 0xca6c]);
    const ka = (v: string) => parseWgQuickConfig(`[Interface]\nPrivateKey = ${PRIV}\n[Peer]\nPublicKey = ${PUB_A}\nPersistentKeepalive = ${v}`, 'x').peers[0].persistentKeepalive;
    expect([ka('off'), ka('0'), ka('65535')]).toEqual([0, 0, 65535]);
  });

  it.each([
    ['1.2.3.4:1', { host: '1.2.3.4', port: 1, family: 4 }],
    ['[::1]:65535', { host: '::1', port: 65535, family: 6 }],
    ['[fe80::1%eth0]:51820', { host: 'fe80::1%eth0', port: 51820, family: 6 }],
    ['localhost:51820', { host: 'localhost', port: 51820, family: null }],
    ['my-host_1.corp.example.:9', { host: 'my-host_1.corp.example.', port: 9, family: null }],
    ['1e100.net:443', { host: '1e100.net', port: 443, family: null }],
  ])('Endpoint %s', (text, want) => {
    const cfg = parseWgQuickConfig(`[Interface]\nPrivateKey = ${PRIV}\n[Peer]\nPublicKey = ${PUB_A}\nEndpoint = ${text}`, 'x');
    expect(cfg.peers[0].endpoint).toEqual(want);
  });
});

describe('parseWgQuickConfig errors: one line, with file and line number', () => {
  const I = `[Interface]\nPrivateKey = ${PRIV}\n`; // lines 1-2
  const P = `${I}[Peer]\nPublicKey = ${PUB_A}\n`; // lines 3-4; the next line is 5
  it.each([
    ['bad PrivateKey', '[Interface]\nPrivateKey = abc', 'wg0.conf:2: invalid PrivateKey: not 32 bytes of base64'],
    ['key before any section', `ListenPort = 1\n${I}`, 'wg0.conf:1: "ListenPort" is outside a section; put it under [Interface] or [Peer]'],
    ['unknown section', `${I}[Peers]`, 'wg0.conf:3: unknown section "[Peers]"; expected [Interface] or [Peer]'],
    ['unclosed section', `${I}[Peer`, 'wg0.conf:3: malformed section header "[Peer"'],
    ['unknown key', `${I}Foo = 1`, 'wg0.conf:3: unknown key "Foo" in [Interface]'],
    ['peer key in [Interface]', `${I}PublicKey = ${PUB_A}`, 'wg0.conf:3: PublicKey belongs in [Peer], not [Interface]'],
    ['interface key in [Peer]', `${P}Address = 10.0.0.1/24`, 'wg0.conf:5: Address belongs in [Interface], not [Peer]'],
    ['wg-quick key in [Peer]', `${P}dns = 1.1.1.1`, 'wg0.conf:5: DNS belongs in [Interface], not [Peer]'],
    ['no "="', `${I}ListenPort 51820`, 'wg0.conf:3: expected "Key = Value" or a [Section], got "ListenPort 51820"'],
    ['no key', `${I} = 5`, 'wg0.conf:3: missing key before "="'],
    ['key with a space inside', `${I}Listen Port = 5`, 'wg0.conf:3: unknown key "Listen Port" in [Interface]'],
    ['duplicate ListenPort', `${I}ListenPort = 1\nlistenport = 2`, 'wg0.conf:4: duplicate ListenPort (first on line 3)'],
    ['duplicate PrivateKey', `${I}PrivateKey = ${PRIV}`, 'wg0.conf:3: duplicate PrivateKey (first on line 2)'],
    ['duplicate MTU', `${I}MTU = 1420\n# comment\nMTU = 1280`, 'wg0.conf:5: duplicate MTU (first on line 3)'],
    ['duplicate Endpoint', `${P}Endpoint = 1.2.3.4:1\nEndpoint = 1.2.3.4:2`, 'wg0.conf:6: duplicate Endpoint (first on line 5)'],
    ['second [Interface]', `${I}[Interface]`, 'wg0.conf:3: duplicate [Interface] section (first on line 1)'],
    ['no PrivateKey', '\n[Interface]\nListenPort = 1', 'wg0.conf:2: [Interface] has no PrivateKey'],
    ['no [Interface]', `[Peer]\nPublicKey = ${PUB_A}`, 'wg0.conf:1: missing [Interface] section'],
    ['empty file', '', 'wg0.conf:1: missing [Interface] section'],
    ['peer without PublicKey', `${I}\n[Peer]\nAllowedIPs = 10.0.0.0/8\n[Peer]\nPublicKey = ${PUB_A}`, 'wg0.conf:4: [Peer] has no PublicKey'],
    ['same PublicKey twice in one peer', `${P}PublicKey = ${PUB_B}`, 'wg0.conf:5: duplicate PublicKey (first on line 4)'],
    ['two peers with one PublicKey', `${P}\n[Peer]\nPublicKey = ${PUB_A}`, 'wg0.conf:7: duplicate PublicKey: the [Peer] on line 3 has the same key'],
    ['bad PublicKey', `${I}[Peer]\nPublicKey = ${PUB_A.slice(1)}`, 'wg0.conf:4: invalid PublicKey: not 32 bytes of base64'],
    ['non-canonical PublicKey', `${I}[Peer]\nPublicKey = ${PUB_A.slice(0, 42)}1=`, 'wg0.conf:4: invalid PublicKey: not 32 bytes of base64'],
    ['bad PresharedKey', `${P}PresharedKey = ${PSK.replace('/', '_')}`, 'wg0.conf:5: invalid PresharedKey: not 32 bytes of base64'],
    ['prefix too long', `${P}AllowedIPs = 10.0.0.0/33`, 'wg0.conf:5: invalid AllowedIPs "10.0.0.0/33": prefix length 33 exceeds 32'],
    ['IPv6 prefix too long', `${P}AllowedIPs = 10.0.0.0/8, fd00::/129`, 'wg0.conf:5: invalid AllowedIPs "fd00::/129": prefix length 129 exceeds 128'],
    ['not an address', `${P}AllowedIPs = 10.0.0.256/8`, 'wg0.conf:5: invalid AllowedIPs "10.0.0.256/8": "10.0.0.256" is not an IPv4 or IPv6 address'],
    ['prefix not a number', `${P}AllowedIPs = 10.0.0.0/x`, 'wg0.conf:5: invalid AllowedIPs "10.0.0.0/x": prefix length "x" is not a decimal number'],
    ['empty list item', `${P}AllowedIPs = 10.0.0.0/8,,fd00::/8`, 'wg0.conf:5: invalid AllowedIPs "10.0.0.0/8,,fd00::/8": empty item in list'],
    ['zone in Address', `${I}Address = 10.0.0.1/24, fe80::1%eth0/64`, 'wg0.conf:3: invalid Address "fe80::1%eth0/64": a prefix cannot carry an IPv6 zone'],
    ['ListenPort out of range', `${I}ListenPort = 65536`, 'wg0.conf:3: invalid ListenPort 65536: out of range 0..65535'],
    ['ListenPort a service name', `${I}ListenPort = http`, 'wg0.conf:3: invalid ListenPort "http": not a decimal number'],
    ['ListenPort negative', `${I}ListenPort = -1`, 'wg0.conf:3: invalid ListenPort "-1": not a decimal number'],
    ['MTU too small', `${I}MTU = 10`, 'wg0.conf:3: invalid MTU 10: out of range 68..65535'],
    ['FwMark past 32 bits (hex)', `${I}FwMark = 0x100000000`, 'wg0.conf:3: invalid FwMark "0x100000000": expected off, a decimal or a 0x-hex 32-bit number'],
    ['FwMark past 32 bits', `${I}FwMark = 4294967296`, 'wg0.conf:3: invalid FwMark 4294967296: out of range 0..4294967295'],
    ['FwMark octal', `${I}FwMark = 010`, 'wg0.conf:3: invalid FwMark "010": expected off, a decimal or a 0x-hex 32-bit number'],
    ['Endpoint without port', `${P}Endpoint = 1.2.3.4`, 'wg0.conf:5: invalid Endpoint "1.2.3.4": missing ":port"'],
    ['Endpoint [v6] without port', `${P}Endpoint = [fd00::1]`, 'wg0.conf:5: invalid Endpoint "[fd00::1]": missing ":port"'],
    ['Endpoint IPv6 unbracketed', `${P}Endpoint = fd00::1:51820`, 'wg0.conf:5: invalid Endpoint "fd00::1:51820": an IPv6 address must be in brackets, as in [2001:db8::1]:51820'],
    ['Endpoint port 0', `${P}Endpoint = 1.2.3.4:0`, 'wg0.conf:5: invalid Endpoint "1.2.3.4:0": port 0 is out of range 1..65535'],
    ['Endpoint port too big', `${P}Endpoint = host:65536`, 'wg0.conf:5: invalid Endpoint "host:65536": port 65536 is out of range 1..65535'],
    ['Endpoint port not a number', `${P}Endpoint = host:wg`, 'wg0.conf:5: invalid Endpoint "host:wg": port "wg" is not a decimal number'],
    ['Endpoint bad host', `${P}Endpoint = bad!host:1`, 'wg0.conf:5: invalid Endpoint "bad!host:1": "bad!host" is neither an IP address nor a host name'],
    ['Endpoint mistyped IPv4', `${P}Endpoint = 1.2.3.999:1`, 'wg0.conf:5: invalid Endpoint "1.2.3.999:1": "1.2.3.999" is neither an IP address nor a host name'],
    ['Endpoint IPv4 in brackets', `${P}Endpoint = [1.2.3.4]:1`, 'wg0.conf:5: invalid Endpoint "[1.2.3.4]:1": brackets are only for IPv6 addresses'],
    ['Endpoint name in brackets', `${P}Endpoint = [vpn.example.com]:1`, 'wg0.conf:5: invalid Endpoint "[vpn.example.com]:1": "vpn.example.com" is not an IP address'],
    ['PersistentKeepalive too big', `${P}PersistentKeepalive = 70000`, 'wg0.conf:5: invalid PersistentKeepalive 70000: out of range 0..65535'],
    ['PersistentKeepalive word', `${P}PersistentKeepalive = sometimes`, 'wg0.conf:5: invalid PersistentKeepalive "sometimes": not a decimal number'],
  ])('%s', (_name, text, message) => {
    const e = errorOf(text);
    expect(e.message).toBe(message);
    expect(e.code).toBe('ECONFIG');
    expect(e.file).toBe('wg0.conf');
    expect(e.message.startsWith(`wg0.conf:${e.line}: `)).toBe(true);
    expect(e.message).not.toContain('\n');
  });

  it('never echoes a key, and keeps a hostile value or file name on one line', () => {
    const almost = PRIV.slice(0, 43) + '!';
    expect(errorOf(`[Interface]\nPrivateKey = ${almost}`).message).not.toContain(PRIV.slice(0, 20));
    const e = errorOf(`[Interface]\nPrivateKey = ${PRIV}\nListenPort = 1\u000b2\r`, 'evil\nname.conf');
    expect(e.message).toBe('evil?name.conf:3: invalid ListenPort "1\\u000b2": not a decimal number');
  });

  it('cuts long values short', () => {
    const e = errorOf(`[Interface]\nPrivateKey = ${PRIV}\nFoo${'o'.repeat(500)} = 1`);
    expect(e.message.length).toBeLessThan(120);
  });
});

describe('formatWgQuickConfig', () => {
  it('writes a config that reads back the same', () => {
    const cfg = parseWgQuickConfig(FULL, 'wg0.conf');
    const text = formatWgQuickConfig(cfg);
    expect(text).toBe(
      [
        '[Interface]',
        `PrivateKey = ${PRIV}`,
        'ListenPort = 51820',
        'FwMark = 0x1234',
        'Address = 10.99.0.1/24, fd00::1/64, 10.100.0.1/32',
        'MTU = 1420',
        'DNS = 1.1.1.1, example.com',
        'PostUp = iptables -A FORWARD -i %i -j ACCEPT; echo up',
        'SaveConfig = true',
        '',
        '[Peer]',
        `PublicKey = ${PUB_A}`,
        `PresharedKey = ${PSK}`,
        'AllowedIPs = 10.99.0.2/32, fd00::/64, 10.0.0.0/24',
        'Endpoint = 192.0.2.2:51820',
        'PersistentKeepalive = 25',
        '',
        '[Peer]',
        `PublicKey = ${PUB_B}`,
        'AllowedIPs = 0.0.0.0/0, ::/0',
        'Endpoint = vpn.example.com:4500',
        'PersistentKeepalive = off',
        '',
        '[Peer]',
        `PublicKey = ${PUB_C}`,
        'Endpoint = [2001:db8::1]:51820',
        '',
      ].join('\n'),
    );
    const again = parseWgQuickConfig(text, 'round.conf');
    expect(withoutLines(again)).toEqual(withoutLines(cfg));
    expect(formatWgQuickConfig(again)).toBe(text);
  });

  it('round-trips wg showconf output, zone and FwMark off included', () => {
    const cfg = parseWgQuickConfig(WG_SHOWCONF, 'showconf');
    expect(parseWgQuickConfig(formatWgQuickConfig(cfg), 'again')).toEqual(cfg);
    cfg.interface.fwmark = 0;
    expect(formatWgQuickConfig(cfg)).toContain('\nFwMark = off\n');
    expect(parseWgQuickConfig(formatWgQuickConfig(cfg), 'again').interface.fwmark).toBe(0);
  });

  it('refuses an ignored value it could not write back faithfully', () => {
    const cfg = parseWgQuickConfig(`[Interface]\nPrivateKey = ${PRIV}`, 'x');
    cfg.ignored.push({ key: 'PostUp', value: 'echo a # b', line: 3 });
    expect(() => formatWgQuickConfig(cfg)).toThrow(RangeError);
  });
});

describe('keys', () => {
  it('base64 and hex round-trip, hex in either case', () => {
    const k = b64(PRIV);
    expect(k).toHaveLength(32);
    expect(encodeKeyBase64(k)).toBe(PRIV);
    const h = encodeKeyHex(k);
    expect(h).toBe('58cdfd34ee7ac66efe8a848a1b3c357eae7d3e7f09bccbec895509695c4a054d');
    expect(decodeKeyHex(h.toUpperCase())).toEqual(k);
    const all = new Uint8Array(32).map((_, i) => i * 8 + 7);
    expect(b64(encodeKeyBase64(all))).toEqual(all);
    expect(encodeKeyBase64(new Uint8Array(32))).toBe('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=');
    expect(encodeKeyBase64(new Uint8Array(32).fill(255))).toBe('//////////////////////////////////////////8=');
  });

  it.each([
    ['too short', PRIV.slice(1)],
    ['no padding', PRIV.slice(0, 43)],
    ['padding inside', PRIV.slice(0, 42) + '=='],
    ['trailing bits set', PRIV.slice(0, 42) + '1='],
    ['url-safe alphabet', PRIV.replace('+', '-')],
    ['surrounding space', ` ${PRIV}`],
    ['too long', PRIV + 'A'],
  ])('base64 refuses a key %s', (_name, text) => {
    expect(() => decodeKeyBase64(text)).toThrow(KeyFormatError);
  });

  it.each([['63 digits', 'a'.repeat(63)], ['65 digits', 'a'.repeat(65)], ['not hex', 'g'.repeat(64)], ['0x prefix', `0x${'a'.repeat(62)}`]])(
    'hex refuses %s',
    (_name, text) => {
      expect(() => decodeKeyHex(text)).toThrow(KeyFormatError);
    },
  );

  it('encoders refuse keys that are not 32 bytes', () => {
    expect(() => encodeKeyBase64(new Uint8Array(31))).toThrow(KeyFormatError);
    expect(() => encodeKeyHex(new Uint8Array(33))).toThrow(KeyFormatError);
  });
});

const WG = '/usr/bin/wg';

describe('against the real wg(8)', () => {
  it.skipIf(!existsSync(WG))('wg pubkey and genkey agree with our key codec, and both refuse the same bad keys', () => {
    const wg = (args: string[], input?: string) => execFileSync(WG, args, { input, timeout: 5000 }).toString().trim();
    expect(wg(['pubkey'], `${encodeKeyBase64(decodeKeyBase64(PRIV))}\n`)).toBe(PRIV_PUB);
    for (let i = 0; i < 5; i++) {
      const priv = wg(['genkey']);
      expect(encodeKeyBase64(decodeKeyBase64(priv))).toBe(priv);
      const pub = wg(['pubkey'], `${priv}\n`);
      expect(encodeKeyBase64(decodeKeyBase64(pub))).toBe(pub);
      const psk = wg(['genpsk']);
      expect(encodeKeyBase64(decodeKeyBase64(psk))).toBe(psk);
    }
    for (const bad of [PRIV.slice(0, 42) + '1=', PRIV.replace('+', '-'), PRIV.slice(0, 42) + '==', PRIV.slice(1)]) {
      expect(() => decodeKeyBase64(bad)).toThrow(KeyFormatError);
      expect(() => execFileSync(WG, ['pubkey'], { input: `${bad}\n`, stdio: 'pipe', timeout: 5000 })).toThrow();
    }
  });
});
