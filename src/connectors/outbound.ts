/**
 * Where gameops may send a request it was told to send (a registry's token realm, a notification webhook):
 * the address ranges a host name resolves into, and a lookup pinned to the addresses that were checked, so
 * that a second DNS answer cannot move the connection somewhere else (DNS rebinding).
 *
 * Loopback, private and link-local destinations reach gameops's own neighbourhood (the metadata service at
 * 169.254.169.254, the store, the game servers' ops endpoints); callers allow them only when the
 * configuration says so explicitly. Multicast, documentation and other reserved ranges are never asked.
 */
import type { LookupAddress } from 'node:dns';
import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/** Host name → addresses (all of them), as `dns.promises.lookup(host, { all: true })` answers. */
export type Resolve = (host: string) => Promise<LookupAddress[]>;

/** Where an address leads. `reserved`: multicast, documentation and other ranges nothing should be asked at. */
export type AddressRange = 'public' | 'loopback' | 'private' | 'link-local' | 'reserved';

/** `host`, `host:port`, `[v6]` or `[v6]:port` → the bare host name or address. */
export function bareHost(host: string): string {
  return host.replace(/^\[(.*)\](:\d+)?$/, '$1').replace(/^([^:]*):\d+$/, '$1');
}

/** Whether a host (name or address, with or without a port) is this machine by its usual names. */
export function isLoopbackHost(host: string): boolean {
  const h = bareHost(host);
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

function blockList(v4: Array<[string, number]>, v6: Array<[string, number]>): BlockList {
  const list = new BlockList();
  for (const [net, prefix] of v4) list.addSubnet(net, prefix, 'ipv4');
  for (const [net, prefix] of v6) list.addSubnet(net, prefix, 'ipv6');
  return list;
}

const RANGES: Array<[Exclude<AddressRange, 'public'>, BlockList]> = [
  // 0.0.0.0/8 is "this host": connecting to 0.0.0.0 reaches local services.
  [
    'loopback',
    blockList(
      [
        ['127.0.0.0', 8],
        ['0.0.0.0', 8],
      ],
      [
        ['::1', 128],
        ['::', 128],
      ],
    ),
  ],
  [
    'private',
    blockList(
      [
        ['10.0.0.0', 8],
        ['172.16.0.0', 12],
        ['192.168.0.0', 16],
        ['100.64.0.0', 10],
      ],
      [
        ['fc00::', 7],
        ['fec0::', 10],
      ],
    ),
  ],
  ['link-local', blockList([['169.254.0.0', 16]], [['fe80::', 10]])],
  [
    'reserved',
    blockList(
      [
        ['224.0.0.0', 4],
        ['240.0.0.0', 4],
        ['192.0.0.0', 24],
        ['192.0.2.0', 24],
        ['198.18.0.0', 15],
        ['198.51.100.0', 24],
        ['203.0.113.0', 24],
      ],
      [
        ['ff00::', 8],
        ['2001:db8::', 32],
        ['100::', 64],
      ],
    ),
  ],
];

/** The range of an IP address (IPv4-mapped and NAT64 IPv6 addresses count as the IPv4 address inside). */
export function addressRange(address: string): AddressRange {
  const family = isIP(address);
  if (family === 0) return 'reserved';
  if (family === 6) {
    const nat64 = /^64:ff9b::([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(
      new URL(`http://[${address}]/`).hostname.slice(1, -1),
    );
    if (nat64) {
      const n = (parseInt(nat64[1]!, 16) << 16) | parseInt(nat64[2]!, 16);
      return addressRange([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.'));
    }
  }
  for (const [range, list] of RANGES) if (list.check(address, family === 4 ? 'ipv4' : 'ipv6')) return range;
  return 'public';
}

/** The system resolver, every address, in the order it answers. */
export const systemResolve: Resolve = (host) => dnsLookup(host, { all: true, verbatim: true });

/** The addresses of `host` (`host[:port]` or a literal address, which is its own answer). */
export async function addressesOf(host: string, resolve: Resolve = systemResolve): Promise<LookupAddress[]> {
  const h = bareHost(host);
  const family = isIP(h);
  return family !== 0 ? [{ address: h, family }] : resolve(h);
}

/** A lookup that answers the addresses already checked, so the connection goes nowhere else. */
export function pinnedLookup(addresses: LookupAddress[]): LookupFunction {
  return (_hostname, options, callback) => {
    if (options.all === true) callback(null, addresses);
    else callback(null, addresses[0]!.address, addresses[0]!.family);
  };
}

export type DestinationCheck = { ok: true; addresses: LookupAddress[] } | { ok: false; why: string };

/**
 * Whether `host` may be connected to, and at which addresses: every address it resolves to must be public,
 * unless the host (as written, lower-cased, without a port) is in `allowPrivate`, which admits loopback,
 * private and link-local addresses for it. Reserved ranges are refused whatever the list says. A refusal
 * says why, naming the host and the address but never a URL's path or query (they may hold a secret).
 */
export async function checkDestination(
  host: string,
  options: {
    allowPrivate?: readonly string[];
    resolve?: Resolve;
    /** Said after a refusal of a private address, e.g. how to allow it. */
    allowHint?: (host: string) => string;
  } = {},
): Promise<DestinationCheck> {
  const name = bareHost(host).toLowerCase();
  let addresses: LookupAddress[];
  try {
    addresses = await addressesOf(name, options.resolve ?? systemResolve);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return { ok: false, why: `cannot resolve ${name} (${typeof code === 'string' ? code : String(err)})` };
  }
  if (addresses.length === 0) return { ok: false, why: `${name} has no address` };
  const allowed = (options.allowPrivate ?? []).some((h) => bareHost(h).toLowerCase() === name);
  for (const a of addresses) {
    const range = addressRange(a.address);
    if (range === 'public') continue;
    if (range === 'reserved')
      return {
        ok: false,
        why: `${name} resolves to ${a.address}, a reserved address gameops never sends to`,
      };
    if (!allowed)
      return {
        ok: false,
        why: `${name} resolves to ${a.address} (${range})${options.allowHint ? `; ${options.allowHint(name)}` : ''}`,
      };
  }
  return { ok: true, addresses };
}
