/**
 * Endpoints written as URLs, parsed by the same rules as the Rust
 * runtime's `endpoint` module:
 *
 * | form | transport |
 * |---|---|
 * | `tcp://host:port` | TCP byte stream (Node) |
 * | `unix:///absolute/path.sock` | Unix-domain stream socket (Node) |
 * | `ws://host:port/path` | WebSocket (path defaults to `/`) |
 * | `tls://host:port` | TLS over TCP, ALPN `gatewire/1` (Node) |
 * | `wss://host:port/path` | WebSocket over TLS (path defaults to `/`) |
 *
 * Hosts are DNS names, IPv4 addresses or bracketed IPv6 addresses; the
 * brackets are not part of `host` and {@link formatEndpoint} adds them back.
 * Schemes are matched without regard to case. Refused: a missing or unknown
 * scheme, a missing host or port, a port that is not a decimal `u16`, an
 * unbracketed IPv6 address, credentials (`user@host`: tokens never travel
 * in URLs), a path on `tcp://` or `tls://`, a fragment or a character
 * outside visible ASCII in a WebSocket path, and a Unix path that is empty,
 * relative or contains a NUL.
 *
 * @module
 */

import { GatewireError } from './errors.js';

/** A parsed endpoint. */
export type Endpoint =
  | { readonly scheme: 'tcp' | 'tls'; readonly host: string; readonly port: number }
  | { readonly scheme: 'ws' | 'wss'; readonly host: string; readonly port: number; readonly path: string }
  | { readonly scheme: 'unix'; readonly path: string };

/** An endpoint URL was refused. */
export class EndpointError extends GatewireError {
  readonly code = 'endpoint.invalid';
  constructor(
    /** The input. */
    readonly input: string,
    /** What is wrong with it. */
    readonly reason: string,
  ) {
    super(`invalid endpoint \`${input}\`: ${reason}`);
  }
}

const IPV6 = /^[0-9A-Fa-f:.]+$/;
const HOST = /^[A-Za-z0-9._-]+$/;

function parseAuthority(input: string, authority: string): [string, number] {
  const bad = (reason: string): EndpointError => new EndpointError(input, reason);
  if (authority.includes('@')) {
    throw bad('credentials (`user@host`) never go in endpoint URLs');
  }
  let host: string;
  let port: string;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0) {
      throw bad('missing `]`');
    }
    host = authority.slice(1, close);
    if (!host.includes(':') || !IPV6.test(host)) {
      throw bad('only IPv6 addresses go between brackets');
    }
    const after = authority.slice(close + 1);
    if (after === '') {
      throw bad('no port; write host:port');
    }
    if (!after.startsWith(':')) {
      throw bad('expected `:port` after `]`');
    }
    port = after.slice(1);
  } else {
    const colon = authority.lastIndexOf(':');
    if (colon < 0) {
      throw bad(authority === '' ? 'no host' : 'no port; write host:port');
    }
    host = authority.slice(0, colon);
    port = authority.slice(colon + 1);
    if (host.includes(':')) {
      throw bad('IPv6 addresses must be written in brackets, as in [::1]:4000');
    }
    if (host === '') {
      throw bad('no host');
    }
    if (!HOST.test(host)) {
      throw bad('expected a DNS name or an IP address (letters, digits, `-`, `.`, `_`)');
    }
  }
  if (port === '') {
    throw bad('no port; write host:port');
  }
  if (!/^[0-9]+$/.test(port) || Number(port) > 0xffff) {
    throw bad(`invalid port \`${port}\`: expected a number from 0 to 65535`);
  }
  return [host, Number(port)];
}

function splitAuthority(rest: string): [string, string] {
  const m = /[/?#]/.exec(rest);
  const end = m === null ? rest.length : m.index;
  return [rest.slice(0, end), rest.slice(end)];
}

/**
 * Parses an endpoint URL.
 *
 * @throws {EndpointError} naming what is wrong.
 */
export function parseEndpoint(input: string): Endpoint {
  const sep = input.indexOf('://');
  if (sep < 0) {
    throw new EndpointError(input, 'no scheme; expected tcp://, unix://, ws://, tls:// or wss://');
  }
  const scheme = input.slice(0, sep).toLowerCase();
  const rest = input.slice(sep + 3);
  switch (scheme) {
    case 'tcp':
    case 'tls': {
      const [authority, tail] = splitAuthority(rest);
      const [host, port] = parseAuthority(input, authority);
      if (tail !== '') {
        throw new EndpointError(input, `${scheme}:// endpoints take no path, query or fragment`);
      }
      return { scheme, host, port };
    }
    case 'ws':
    case 'wss': {
      const [authority, tail] = splitAuthority(rest);
      const [host, port] = parseAuthority(input, authority);
      const path = tail === '' ? '/' : tail;
      if (!path.startsWith('/')) {
        throw new EndpointError(input, 'the websocket path must start with `/`');
      }
      if (path.includes('#')) {
        throw new EndpointError(input, 'fragments are not allowed in the websocket path');
      }
      if (!/^[\x21-\x7e]*$/.test(path)) {
        throw new EndpointError(input, 'only visible ASCII characters are allowed in the path (percent-encode the rest)');
      }
      return { scheme, host, port, path };
    }
    case 'unix': {
      if (rest === '') {
        throw new EndpointError(input, 'unix endpoint has no path; write unix:///absolute/path.sock');
      }
      if (rest.includes('\0')) {
        throw new EndpointError(input, 'unix socket path contains a NUL byte');
      }
      if (!rest.startsWith('/')) {
        throw new EndpointError(input, 'unix socket path is not absolute; write unix:///absolute/path.sock');
      }
      return { scheme: 'unix', path: rest };
    }
    default:
      throw new EndpointError(input, `unknown scheme \`${scheme}\`; expected tcp, unix, ws, tls or wss`);
  }
}

/** `host:port`, with brackets around an IPv6 host. */
export function formatAuthority(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The endpoint as a URL; `parseEndpoint(formatEndpoint(e))` gives `e` back. */
export function formatEndpoint(e: Endpoint): string {
  switch (e.scheme) {
    case 'tcp':
    case 'tls':
      return `${e.scheme}://${formatAuthority(e.host, e.port)}`;
    case 'ws':
    case 'wss':
      return `${e.scheme}://${formatAuthority(e.host, e.port)}${e.path}`;
    case 'unix':
      return `unix://${e.path}`;
  }
}
