/**
 * TLS for Node (`tls://` over `node:tls`, `wss://` over `ws` and
 * `node:https`), mirroring the Rust runtime's `transport::tls`:
 *
 * - **TLS 1.2 at least** (`minVersion`); a Rust peer speaks TLS 1.3 only, so
 *   that is what it negotiates.
 * - **ALPN `gatewire/1`** ({@link ALPN}) on `tls://`, on both ends: a server
 *   offers only it and drops a client that did not select it; a client fails
 *   with {@link AlpnError} unless the server selected it. `wss://` offers
 *   `http/1.1` ({@link ALPN_HTTP11}), as browsers do; the `gatewire.v1`
 *   subprotocol plays the same role there.
 * - **The server's certificate and name are always verified**: against the
 *   CAs given (`ca` / `caFile`) or, without them, Node's bundled roots; and
 *   against the endpoint's host (DNS name or IP address) or `serverName`.
 *   There is no option to turn this off.
 * - **Client certificates (mTLS)**: `clientCa` / `clientCaFile` make them
 *   required; `clientAuthOptional` lets clients without one connect too
 *   (an authenticator then decides), while a certificate that is sent is
 *   still verified. The verified certificate is in the transport's
 *   {@link NodeTransportInfo.tls} ({@link tlsInfoOf}).
 *
 * A certificate that does not verify fails the connect with
 * {@link CertificateVerifyError} ({@link HostnameMismatchError} for a name
 * that does not match); other TLS failures are {@link TlsError}s.
 *
 * @module
 */

import type { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import * as tls from 'node:tls';

import { ConfigError, TransportError } from '../rpc-errors.js';
import type { TransportInfo } from '../transport.js';

/** The ALPN protocol id of gatewire over TLS (`tls://`). */
export const ALPN = 'gatewire/1';

/** The ALPN protocol id under `wss://`: WebSocket runs over HTTP/1.1. */
export const ALPN_HTTP11 = 'http/1.1';

/** The oldest TLS version accepted. */
export const MIN_VERSION = 'TLSv1.2';

/** PEM text: a string, bytes, or several of them. */
export type Pem = string | Uint8Array | readonly (string | Uint8Array)[];

/** TLS settings of a client (`tls://`, `wss://`). */
export interface TlsClientOptions {
  /** CA certificates to trust (PEM). Without `ca` or `caFile`, Node's bundled roots. */
  ca?: Pem | undefined;
  /** A PEM file of CA certificates to trust. */
  caFile?: string | undefined;
  /** A certificate chain to present to servers that ask (mTLS), PEM. */
  cert?: Pem | undefined;
  /** Its private key, PEM. */
  key?: Pem | undefined;
  /** {@link cert} from a file. */
  certFile?: string | undefined;
  /** {@link key} from a file. */
  keyFile?: string | undefined;
  /**
   * Verify the server's certificate for this name instead of the endpoint's
   * host (dial `tls://10.0.0.5:4000`, verify `gateway.internal`). The name is
   * always verified; this only chooses it.
   */
  serverName?: string | undefined;
}

/** TLS settings of a server's `tls://` and `wss://` listeners. */
export interface TlsServerOptions {
  /** The server's certificate chain (leaf first), PEM. */
  cert?: Pem | undefined;
  /** Its private key, PEM. */
  key?: Pem | undefined;
  /** {@link cert} from a file. */
  certFile?: string | undefined;
  /** {@link key} from a file. */
  keyFile?: string | undefined;
  /** Require client certificates issued by these CAs (PEM). */
  clientCa?: Pem | undefined;
  /** {@link clientCa} from a file. */
  clientCaFile?: string | undefined;
  /** With a client CA: let clients without a certificate connect too (a sent certificate is still verified). Default false. */
  clientAuthOptional?: boolean | undefined;
}

/** The identity in a certificate the TLS layer verified. */
export interface PeerCertificate {
  /** The subject distinguished name (`CN=desktop, O=Example`). */
  readonly subject: string;
  /** The subject's first common name, if any. */
  readonly commonName: string | undefined;
  /** DNS names among the subject alternative names. */
  readonly dnsNames: readonly string[];
  /** URIs among the subject alternative names. */
  readonly uris: readonly string[];
  /** E-mail addresses among the subject alternative names. */
  readonly emails: readonly string[];
  /** IP addresses among the subject alternative names, as Node prints them. */
  readonly ipAddresses: readonly string[];
  /** End of validity. */
  readonly notAfter: Date;
  /** SHA-256 of the DER certificate, lowercase hex. */
  readonly sha256: string;
  /** The common name, else the first DNS name, URI or e-mail address, else the subject. */
  readonly name: string;
}

/** What a TLS session established. */
export interface TlsInfo {
  /** The protocol version (`TLSv1.3`). */
  readonly version: string | undefined;
  /** The ALPN protocol both ends agreed on. */
  readonly alpn: string | undefined;
  /** Client side: the name the server's certificate was verified against. */
  readonly serverName: string | undefined;
  /** The peer's verified certificate: the client's on a server (mTLS), the server's on a client. */
  readonly peerCertificate: PeerCertificate | undefined;
}

/** What the Node transports know about the peer: the base facts plus, over TLS, the session. */
export interface NodeTransportInfo extends TransportInfo {
  /** TLS session facts (`tls://`, `wss://`). */
  readonly tls?: TlsInfo | undefined;
}

/** The TLS facts of a connection's transport (`connection.transportInfo`), if it runs over TLS. */
export function tlsInfoOf(info: TransportInfo): TlsInfo | undefined {
  return (info as NodeTransportInfo).tls;
}

/** Whether a verified certificate carries `name` as its common name or a DNS, URI or e-mail alternative name. */
export function certificateHasName(cert: PeerCertificate, name: string): boolean {
  return cert.commonName === name || [...cert.dnsNames, ...cert.uris, ...cert.emails].includes(name);
}

/** TLS failed: an alert (the peer refused our certificate), no protocol in common... */
export class TlsError extends TransportError {
  constructor(
    detail: string,
    /** Node's or OpenSSL's error code (`ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED`...), when there is one. */
    readonly tlsCode: string | undefined,
    cause?: unknown,
  ) {
    super(detail, cause);
    this.name = 'TlsError';
  }
}

/** The peer's certificate did not verify: unknown CA, expired, not for this use... */
export class CertificateVerifyError extends TlsError {
  constructor(detail: string, tlsCode: string | undefined, cause?: unknown) {
    super(detail, tlsCode, cause);
    this.name = 'CertificateVerifyError';
  }
}

/** The server's certificate verified, but names neither the host dialled nor `serverName`. */
export class HostnameMismatchError extends CertificateVerifyError {
  constructor(detail: string, tlsCode: string | undefined, cause?: unknown) {
    super(detail, tlsCode, cause);
    this.name = 'HostnameMismatchError';
  }
}

/** The TLS peer did not select `gatewire/1` on `tls://`. */
export class AlpnError extends TlsError {
  constructor(detail: string) {
    super(detail, undefined);
    this.name = 'AlpnError';
  }
}

/** OpenSSL's certificate verification failures, as Node reports them. */
const VERIFY_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
  'CERT_CHAIN_TOO_LONG',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
]);

/**
 * The typed error for a failure of a TLS connection, or `undefined` when
 * `error` is not about TLS (a refused TCP connect...).
 */
export function tlsErrorFrom(error: unknown, what: string): TlsError | undefined {
  if (!(error instanceof Error)) {
    return undefined;
  }
  const code = (error as NodeJS.ErrnoException).code;
  const detail = `${what}: ${error.message}`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return new HostnameMismatchError(detail, code, error);
  }
  if (code !== undefined && VERIFY_CODES.has(code)) {
    return new CertificateVerifyError(detail, code, error);
  }
  if (code !== undefined && (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_'))) {
    return new TlsError(detail, code, error);
  }
  return undefined;
}

function readPem(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const reason = (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e));
    throw new ConfigError(`cannot load ${what} from ${path}: ${reason}`, e);
  }
}

function pem(value: Pem | undefined, file: string | undefined, what: string): Pem | undefined {
  if (value !== undefined && file !== undefined) {
    throw new ConfigError(`give ${what} as text or as a file, not both`);
  }
  return file !== undefined ? readPem(what, file) : value;
}

/** Node's type for PEM options. */
type NodePem = string | Buffer | (string | Buffer)[];

function nodePem(value: Pem | undefined): NodePem | undefined {
  if (value === undefined) {
    return undefined;
  }
  const one = (v: string | Uint8Array): string | Buffer =>
    typeof v === 'string' ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return typeof value === 'string' || value instanceof Uint8Array ? one(value) : value.map(one);
}

/**
 * `node:tls` connect options for `options` (files read now), offering
 * `alpn`, verifying the server for `host` (or `serverName`).
 *
 * @throws {ConfigError} for a file that cannot be read, or a key without a certificate.
 */
export function clientTlsOptions(options: TlsClientOptions, host: string, alpn: string): tls.ConnectionOptions {
  const ca = pem(options.ca, options.caFile, 'CA certificates');
  const cert = pem(options.cert, options.certFile, 'client certificate');
  const key = pem(options.key, options.keyFile, 'client key');
  if ((cert === undefined) !== (key === undefined)) {
    throw new ConfigError('a client certificate needs its key, and the reverse');
  }
  const name = options.serverName ?? host;
  return {
    ca: nodePem(ca),
    cert: nodePem(cert),
    key: nodePem(key),
    // SNI carries DNS names only; the name is verified either way.
    servername: isIP(name) === 0 ? name : undefined,
    checkServerIdentity: (_hostname, peer) => tls.checkServerIdentity(name, peer),
    rejectUnauthorized: true,
    minVersion: MIN_VERSION,
    ALPNProtocols: [alpn],
  };
}

/**
 * `node:tls` server options for `options` (files read now), offering only
 * `alpn`.
 *
 * @throws {ConfigError} for a missing certificate or key, or a file that cannot be read.
 */
export function serverTlsOptions(options: TlsServerOptions, alpn: string, handshakeMs: number): tls.TlsOptions {
  const cert = pem(options.cert, options.certFile, 'certificate chain');
  const key = pem(options.key, options.keyFile, 'private key');
  if (cert === undefined || key === undefined) {
    throw new ConfigError('a TLS server needs a certificate chain and its private key');
  }
  const clientCa = pem(options.clientCa, options.clientCaFile, 'client CA certificates');
  return {
    cert: nodePem(cert),
    key: nodePem(key),
    ca: nodePem(clientCa),
    requestCert: clientCa !== undefined,
    // Optional client certificates are checked after the handshake
    // ({@link acceptsPeer}): a certificate that is sent must verify.
    rejectUnauthorized: clientCa !== undefined && options.clientAuthOptional !== true,
    minVersion: MIN_VERSION,
    ALPNProtocols: [alpn],
    handshakeTimeout: handshakeMs,
  };
}

/**
 * Whether an accepted TLS socket may go on: it selected `gatewire/1` on
 * `tls://`, and any client certificate it sent verified.
 */
export function acceptsPeer(socket: tls.TLSSocket, scheme: 'tls' | 'wss'): boolean {
  if (scheme === 'tls' && socket.alpnProtocol !== ALPN) {
    return false;
  }
  return socket.authorized || socket.getPeerX509Certificate() === undefined;
}

/** The facts of an established TLS socket. */
export function sessionInfo(socket: tls.TLSSocket, serverName: string | undefined): TlsInfo {
  const alpn = socket.alpnProtocol;
  const version = socket.getProtocol();
  const x509 = socket.getPeerX509Certificate();
  return {
    version: version ?? undefined,
    alpn: typeof alpn === 'string' ? alpn : undefined,
    serverName,
    peerCertificate: x509 === undefined ? undefined : peerCertificate(x509),
  };
}

/** The identity fields of a certificate. */
export function peerCertificate(x509: X509Certificate): PeerCertificate {
  const rdns = x509.subject.split('\n').filter((l) => l !== '');
  const commonName = rdns.find((l) => l.startsWith('CN='))?.slice(3);
  const names: Record<string, string[]> = { DNS: [], URI: [], email: [], 'IP Address': [] };
  for (const entry of (x509.subjectAltName ?? '').split(', ')) {
    const colon = entry.indexOf(':');
    const list = colon > 0 ? names[entry.slice(0, colon)] : undefined;
    list?.push(entry.slice(colon + 1));
  }
  const dnsNames = names['DNS'] ?? [];
  const uris = names['URI'] ?? [];
  const emails = names['email'] ?? [];
  const subject = rdns.join(', ');
  return {
    subject,
    commonName,
    dnsNames,
    uris,
    emails,
    ipAddresses: names['IP Address'] ?? [],
    notAfter: new Date(x509.validTo),
    sha256: x509.fingerprint256.replaceAll(':', '').toLowerCase(),
    name: commonName ?? dnsNames[0] ?? uris[0] ?? emails[0] ?? subject,
  };
}
