/**
 * Helpers for the TLS tests: a throwaway PKI made with the `openssl` command
 * (a CA, a server certificate for `localhost`, `127.0.0.1` and `::1`, a
 * client certificate `client-1`, and a certificate from another CA), and
 * the Rust and Python peers started with TLS flags.
 */

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { interopPeer, repoRoot, startServing, type PeerServer } from './interop.js';

/** The PEM files of a test PKI. */
export interface Pki {
  readonly dir: string;
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** A CA that issued none of the certificates above. */
  readonly otherCa: string;
  /** A client certificate issued by `otherCa`. */
  readonly strangerCert: string;
  readonly strangerKey: string;
  /** Removes the directory. */
  cleanup(): void;
}

export const CLIENT_NAME = 'client-1';

const EXTENSIONS = `[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
extendedKeyUsage = serverAuth
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
subjectAltName = DNS:client-1.example, URI:spiffe://test/client-1
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
`;

function openssl(dir: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.error !== undefined) {
    throw new Error(`the TLS tests need the openssl command (apt-get install openssl): ${r.error.message}`);
  }
  if (r.status !== 0) {
    throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
  }
}

function key(dir: string, name: string): string {
  openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', name]);
  return join(dir, name);
}

function ca(dir: string, name: string, cn: string): { cert: string; key: string } {
  const k = key(dir, `${name}.key`);
  openssl(dir, [
    'req', '-x509', '-new', '-key', k, '-sha256', '-days', '2', '-subj', `/CN=${cn}/O=gatewire tests`,
    '-config', 'ext.cnf', '-extensions', 'ca', '-out', `${name}.pem`,
  ]);
  return { cert: join(dir, `${name}.pem`), key: k };
}

function leaf(dir: string, name: string, cn: string, section: string, issuer: { cert: string; key: string }): string {
  const k = key(dir, `${name}.key`);
  openssl(dir, ['req', '-new', '-key', k, '-subj', `/CN=${cn}/O=gatewire tests`, '-config', 'ext.cnf', '-out', `${name}.csr`]);
  const serial = `0x${Date.now().toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}`;
  openssl(dir, [
    'x509', '-req', '-in', `${name}.csr`, '-CA', issuer.cert, '-CAkey', issuer.key, '-set_serial', serial,
    '-days', '1', '-sha256', '-extfile', 'ext.cnf', '-extensions', section, '-out', `${name}.pem`,
  ]);
  return join(dir, `${name}.pem`);
}

/** Makes a fresh PKI in a private temporary directory. */
export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'gw-pki-'));
  writeFileSync(join(dir, 'ext.cnf'), EXTENSIONS);
  const root = ca(dir, 'ca', 'gatewire test CA');
  const other = ca(dir, 'other-ca', 'some other CA');
  return {
    dir,
    ca: root.cert,
    serverCert: leaf(dir, 'server', 'gatewire test server', 'server', root),
    serverKey: join(dir, 'server.key'),
    clientCert: leaf(dir, 'client', CLIENT_NAME, 'client', root),
    clientKey: join(dir, 'client.key'),
    otherCa: other.cert,
    strangerCert: leaf(dir, 'stranger', 'stranger', 'client', other),
    strangerKey: join(dir, 'stranger.key'),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Runs `interop-peer client ARGS...`; resolves with its exit code, stdout and stderr. */
export function runRustClient(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const child = spawn(interopPeer(), ['client', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const kill = setTimeout(() => child.kill(), 90_000);
    child.once('exit', (code) => {
      clearTimeout(kill);
      res({ code, stdout, stderr });
    });
  });
}

/** The project venv's interpreter (`$GATEWIRE_PYTHON` overrides); throws saying how to create it when missing. */
function venvPython(): string {
  const env = process.env['GATEWIRE_PYTHON'];
  const python = env !== undefined && env !== '' ? env : join(repoRoot(), 'target', 'tools', 'venv', 'bin', 'python');
  if (!existsSync(python)) {
    throw new Error(
      `the Python venv is missing (${python}): run \`python3 -m venv target/tools/venv && ` +
        "target/tools/venv/bin/pip install -e 'bindings/python[test]'` from the repository root",
    );
  }
  return python;
}

/** The Python interop service over TLS (`test/python_tls_server.py CERT KEY [--token T] URL...`). */
export function servePython(args: string[]): Promise<PeerServer> {
  const script = join(repoRoot(), 'bindings', 'js', 'test', 'python_tls_server.py');
  return startServing(venvPython(), [script, ...args], {
    ...process.env,
    PYTHONUNBUFFERED: '1',
    PYTHONDONTWRITEBYTECODE: '1',
  });
}
