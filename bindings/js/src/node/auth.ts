/**
 * Authentication of clients in the handshake, for Node servers, mirroring
 * the Rust runtime's `auth` module.
 *
 * `serve(urls, router, { authenticator })` asks the authenticator, when a
 * client's HELLO arrives, for the client's {@link Identity}: from the HELLO's
 * `auth` payload (the client's `auth` option, a bearer token) and what the
 * transport knows ({@link NodeTransportInfo}: the verified TLS client
 * certificate). Throwing a `Status` refuses the client with its code
 * (`UNAUTHENTICATED` by convention); the client's `connect` rejects with a
 * `ConnectionClosedError` whose `wireCode` is that code. Any other exception
 * refuses with `INTERNAL`. Handlers read the identity with
 * {@link identityOf}`(ctx.connection)`.
 *
 * | class | decides from | identity subject |
 * |---|---|---|
 * | {@link TokenAuthenticator} | static bearer tokens, kept as SHA-256 digests | the token's subject |
 * | {@link MtlsAuthenticator} | the client certificate TLS verified | common name or first SAN |
 * | {@link AnyAuthenticator} | the first of several that accepts | that one's |
 *
 * Authenticators keep digests, never tokens, and never print them.
 *
 * @module
 */

import { createHash, timingSafeEqual } from 'node:crypto';

import type { AuthorizeRequest, AuthRequest, Connection } from '../peer.js';
import { ConfigError, Status } from '../rpc-errors.js';
import type { TransportInfo } from '../transport.js';
import { ErrorCode } from '../wire.js';
import { certificateHasName, tlsInfoOf, type NodeTransportInfo } from './tls.js';

/** How a peer proved who it is. */
export type AuthMethod = 'token' | 'certificate' | 'custom';

/** Who a client authenticated as. It carries no secret. */
export interface Identity {
  /** A token's subject, a certificate's name... */
  readonly subject: string;
  /** How the identity was established. */
  readonly method: AuthMethod;
  /** When it stops being valid, if ever (a certificate's end of validity). */
  readonly expiresAt?: Date | undefined;
}

/**
 * Decides whether a client may call `method`: `false` denies with
 * `PERMISSION_DENIED`, a thrown `Status` with its code. `identity` is
 * `undefined` when the server has no authenticator.
 */
export type Authorizer = (identity: Identity | undefined, method: number) => boolean | void;

/** Decides whether to accept a client and who it is; throws a `Status` to refuse. */
export interface Authenticator {
  /** The client's identity, from its HELLO `auth` payload and the transport facts. */
  authenticate(auth: Uint8Array | undefined, transport: NodeTransportInfo): Identity;
}

function unauthenticated(message: string): Status {
  return new Status(ErrorCode.UNAUTHENTICATED, message);
}

/**
 * Accepts clients whose HELLO `auth` is one of a set of static bearer
 * tokens (hostile inputs G2).
 *
 * Only the SHA-256 digest of each token is kept. The presented token is
 * hashed and compared with **every** stored digest with
 * `crypto.timingSafeEqual` over equal 32-byte digests, with no early exit, so
 * neither the token's length nor which byte differs shows in the timing. An
 * unknown, a wrong and a missing token all get the same refusal:
 * `UNAUTHENTICATED`, "invalid or missing token". An empty token never
 * matches. Use long random tokens (at least 128 bits of entropy).
 */
export class TokenAuthenticator implements Authenticator {
  readonly #entries: { readonly digest: Buffer; readonly subject: string }[] = [];

  /** Accepts `token` (a string is taken as UTF-8) as `subject`; only its digest is kept. */
  token(subject: string, token: string | Uint8Array): this {
    return this.sha256(subject, createHash('sha256').update(token).digest());
  }

  /**
   * Accepts the token whose SHA-256 digest is `digest` as `subject`.
   *
   * @throws {ConfigError} when `digest` is not 32 bytes.
   */
  sha256(subject: string, digest: Uint8Array): this {
    if (digest.length !== 32) {
      throw new ConfigError(`a SHA-256 digest has 32 bytes, not ${digest.length}`);
    }
    this.#entries.push({ digest: Buffer.from(digest), subject });
    return this;
  }

  /**
   * {@link sha256} with the digest as 64 hex digits (`sha256sum` output).
   *
   * @throws {ConfigError} when it is not 64 hex digits.
   */
  sha256Hex(subject: string, hex: string): this {
    const text = hex.trim();
    if (!/^[0-9A-Fa-f]{64}$/.test(text)) {
      throw new ConfigError('a SHA-256 digest has 64 hex digits');
    }
    return this.sha256(subject, Buffer.from(text, 'hex'));
  }

  /** How many tokens are accepted. */
  get size(): number {
    return this.#entries.length;
  }

  authenticate(auth: Uint8Array | undefined): Identity {
    const presented = auth ?? new Uint8Array(0);
    const digest = createHash('sha256').update(presented).digest();
    let subject: string | undefined;
    for (const entry of this.#entries) {
      // Every entry is compared, equal lengths, whatever matched before.
      if (timingSafeEqual(digest, entry.digest) && subject === undefined) {
        subject = entry.subject;
      }
    }
    if (subject === undefined || presented.length === 0) {
      throw unauthenticated('invalid or missing token');
    }
    return { subject, method: 'token' };
  }

  /** Shows the subjects, never a digest. */
  toString(): string {
    return `TokenAuthenticator(${this.#entries.map((e) => e.subject).join(', ')})`;
  }
}

/**
 * Accepts clients that presented a certificate the TLS layer verified
 * (`tls://` or `wss://` with `clientCa`). The subject is the certificate's
 * name (common name, else first DNS name, URI or e-mail address); the
 * identity expires with the certificate. With `allow`, only certificates
 * carrying one of those names are accepted. A client without a certificate
 * is refused with `UNAUTHENTICATED`.
 */
export class MtlsAuthenticator implements Authenticator {
  readonly #allowed: ReadonlySet<string> | undefined;

  constructor(allow?: Iterable<string>) {
    this.#allowed = allow === undefined ? undefined : new Set(allow);
  }

  authenticate(_auth: Uint8Array | undefined, transport: NodeTransportInfo): Identity {
    const cert = tlsInfoOf(transport)?.peerCertificate;
    if (cert === undefined) {
      throw unauthenticated('a client certificate is required');
    }
    const allowed = this.#allowed;
    if (allowed !== undefined && ![...allowed].some((n) => certificateHasName(cert, n))) {
      throw unauthenticated('client certificate not allowed');
    }
    return { subject: cert.name, method: 'certificate', expiresAt: cert.notAfter };
  }
}

/** Tries several authenticators in order; the first that accepts wins, else the first refusal is thrown. */
export class AnyAuthenticator implements Authenticator {
  readonly #all: readonly Authenticator[];

  constructor(...all: Authenticator[]) {
    this.#all = all;
  }

  authenticate(auth: Uint8Array | undefined, transport: NodeTransportInfo): Identity {
    let first: unknown;
    for (const a of this.#all) {
      try {
        return a.authenticate(auth, transport);
      } catch (e) {
        first ??= e;
      }
    }
    throw first ?? unauthenticated('no authentication method accepted the client');
  }
}

/** The identities of accepted connections, by their transport's facts. */
const identities = new WeakMap<TransportInfo, Identity>();

/**
 * Server side: who the client of `connection` authenticated as, when the
 * server has an `authenticator`; `undefined` otherwise (and on clients).
 */
export function identityOf(connection: Connection): Identity | undefined {
  return identities.get(connection.transportInfo);
}

/**
 * The driver's `authenticate` hook for `authenticator`: refuses with the
 * `Status` it throws (`INTERNAL` for anything else, or `UNAUTHENTICATED`
 * for an expired identity), and records the identity for {@link identityOf}.
 */
export function authenticateHook(authenticator: Authenticator): (request: AuthRequest) => boolean {
  return (request) => {
    let identity: Identity;
    try {
      identity = authenticator.authenticate(request.auth, request.transport);
    } catch (e) {
      throw e instanceof Status ? e : new Status(ErrorCode.INTERNAL, 'authentication failed');
    }
    if (identity.expiresAt !== undefined && identity.expiresAt.getTime() <= Date.now()) {
      throw unauthenticated('credentials expired');
    }
    const current = identities.get(request.transport);
    if (request.reauthenticate === true && current !== undefined && current.subject !== identity.subject) {
      throw unauthenticated('re-authentication must name the same subject');
    }
    identities.set(request.transport, identity);
    return true;
  };
}

/**
 * The driver's `authorize` hook: a call from an identity that has expired
 * since the handshake fails with `UNAUTHENTICATED` (calls already running
 * finish; the client may re-authenticate), then `authorizer`, if any,
 * decides.
 */
export function authorizeHook(authorizer: Authorizer | undefined): (call: AuthorizeRequest) => boolean | void {
  return ({ method, connection }) => {
    const identity = identityOf(connection);
    if (identity?.expiresAt !== undefined && identity.expiresAt.getTime() <= Date.now()) {
      throw unauthenticated('credentials expired');
    }
    return authorizer === undefined ? true : authorizer(identity, method);
  };
}
