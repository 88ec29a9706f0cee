/**
 * TRUSTED_PROXIES as the trust function Fastify asks for every `request.ip`: proxy-addr's compiled
 * check, with its answer remembered per address. The compiled check parses the address with
 * ipaddr.js on every call, twice per hook request (the peer, then the X-Forwarded-For entry
 * before it): 4.4-5.8 us per hook request, against about 0.1 us remembered (load/RESULTS.md,
 * stop 13); a gateway sees the same few proxy and client addresses over and over.
 * X-Forwarded-For is the client's to write, so the memory is bounded: it starts over after `max`
 * distinct addresses.
 */
import proxyAddr from '@fastify/proxy-addr';

export type TrustFn = (addr: string, hop: number) => boolean;

export function memoizedTrust(trusted: readonly string[], max = 10_000): TrustFn {
  // The compiled check answers by address alone (the hop number does not matter to it).
  const check = proxyAddr.compile([...trusted]);
  const seen = new Map<string, boolean>();
  return (addr, hop) => {
    let trust = seen.get(addr);
    if (trust === undefined) {
      trust = check(addr, hop);
      if (seen.size >= max) seen.clear();
      seen.set(addr, trust);
    }
    return trust;
  };
}
