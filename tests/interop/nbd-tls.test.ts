// Goal: NBD over TLS works with the configured certificate for real clients (nbdinfo over nbds://,
// qemu-io with tls-creds-x509), a plain connection is refused in require mode, a client that does not
// trust the certificate gets no data, and in allow mode both plain and TLS clients are served.
// require mode runs in a real StorageDriver process; allow mode in-process (startNbdServer over a real
// vPool), so the registry and the server are also exercised without the process around them.
import assert from "node:assert/strict";
import { copyFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { pino } from "pino";
import { LocalObjectStore } from "../../volumedriver/src/backend/local-store.ts";
import { openVPool } from "../../volumedriver/src/engine/vpool.ts";
import type { VPool } from "../../volumedriver/src/engine/vpool-types.ts";
import { startNbdServer } from "../../volumedriver/src/frontends/nbd/nbd-server.ts";
import type { NbdServer } from "../../volumedriver/src/frontends/nbd/nbd-types.ts";
import { vpoolExportRegistry } from "../../volumedriver/src/storagedriver/nbd-exports.ts";
import { NbdStorageDriver, requireTool, runTool, runToolOk } from "../helpers/nbd-tools.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const MIB = 1024 * 1024;

interface Certificates {
  certificateFile: string;
  keyFile: string;
  /** A directory holding only ca-cert.pem: what libnbd's tls-certificates and qemu's tls-creds-x509 read. */
  clientDirectory: string;
  /** The same layout with a certificate the server does not have. */
  untrustedDirectory: string;
}

/** A self-signed certificate for 127.0.0.1 (CN and SAN), usable as its own CA by the clients. */
async function makeSelfSigned(directory: string, name: string): Promise<{ certificateFile: string; keyFile: string }> {
  const certificateFile = path.join(directory, `${name}-cert.pem`);
  const keyFile = path.join(directory, `${name}-key.pem`);
  await runToolOk("openssl", [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
    "-keyout", keyFile, "-out", certificateFile,
    "-addext", "subjectAltName=IP:127.0.0.1",
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
    "-addext", "extendedKeyUsage=serverAuth",
  ]);
  return { certificateFile, keyFile };
}

async function makeCertificates(directory: string): Promise<Certificates> {
  const server = await makeSelfSigned(directory, "server");
  const other = await makeSelfSigned(directory, "other");
  const clientDirectory = path.join(directory, "client");
  const untrustedDirectory = path.join(directory, "untrusted");
  await mkdir(clientDirectory);
  await mkdir(untrustedDirectory);
  await copyFile(server.certificateFile, path.join(clientDirectory, "ca-cert.pem"));
  await copyFile(other.certificateFile, path.join(untrustedDirectory, "ca-cert.pem"));
  return { ...server, clientDirectory, untrustedDirectory };
}

function tlsUri(port: number, exportName: string, certificatesDirectory: string): string {
  return `nbds://127.0.0.1:${port}/${exportName}?tls-certificates=${certificatesDirectory}`;
}

function qemuTlsArguments(port: number, exportName: string, certificatesDirectory: string): string[] {
  return [
    "--object", `tls-creds-x509,id=tls0,dir=${certificatesDirectory},endpoint=client`,
    "--image-opts", `driver=nbd,host=127.0.0.1,port=${port},export=${exportName},tls-creds=tls0`,
  ];
}

describe("NBD interop: TLS", function () {
  this.timeout(180_000);
  const tempDirs = new TempDirs("nbd-tls");
  let certificates: Certificates;

  before(async function () {
    requireTool(this, "openssl", "nbdinfo", "qemu-io");
    certificates = await makeCertificates(await tempDirs.make("certificates"));
  });

  after(async function () {
    await tempDirs.removeAll();
  });

  describe("require mode, in the StorageDriver process", function () {
    let storagedriver: NbdStorageDriver | undefined;

    before(async function () {
      storagedriver = await NbdStorageDriver.start(await tempDirs.make("require"), {
        tls: { mode: "require", certificateFile: certificates.certificateFile, keyFile: certificates.keyFile },
      });
      await storagedriver.createVdisk("secure", 64 * MIB);
    });

    after(async function () {
      await storagedriver?.killAll();
    });

    it("prints an nbds:// address", function () {
      assert.match(storagedriver!.harness.stdout, new RegExp(`storagedriver nbdtest NBD on nbds://127\\.0\\.0\\.1:${storagedriver!.nbdPort} `));
    });

    it("nbdinfo over nbds:// with the certificate: TLS negotiated, export listed and described", async function () {
      const port = storagedriver!.nbdPort;
      const info = await runToolOk("nbdinfo", ["--json", tlsUri(port, "secure", certificates.clientDirectory)]);
      const parsed = JSON.parse(info.stdout) as { TLS: boolean; exports: Array<Record<string, unknown>> };
      assert.equal(parsed.TLS, true);
      assert.equal(parsed.exports[0]["export-size"], 64 * MIB);
      const listed = await runToolOk("nbdinfo", ["--list", "--json", tlsUri(port, "", certificates.clientDirectory)]);
      const names = (JSON.parse(listed.stdout) as { exports: Array<Record<string, unknown>> }).exports.map((entry) => entry["export-name"]);
      assert.deepEqual(names, ["secure"]);
    });

    it("qemu-io over TLS (tls-creds-x509): pattern write and read back", async function () {
      const port = storagedriver!.nbdPort;
      const written = await runToolOk("qemu-io", [...qemuTlsArguments(port, "secure", certificates.clientDirectory),
        "-c", "write -P 0x7e 1000 70000", "-c", "read -P 0x7e 1000 70000", "-c", "flush"]);
      assert.doesNotMatch(written.stdout, /Pattern verification failed/);
      const reread = await runToolOk("qemu-io", [...qemuTlsArguments(port, "secure", certificates.clientDirectory),
        "-c", "read -P 0x7e 1000 70000", "-c", "read -P 0 0 1000"]);
      assert.doesNotMatch(reread.stdout, /Pattern verification failed/);
    });

    it("refuses plain connections: nbdinfo and qemu-io without TLS get nothing", async function () {
      const port = storagedriver!.nbdPort;
      const plainInfo = await runTool("nbdinfo", [`nbd://127.0.0.1:${port}/secure`]);
      assert.notEqual(plainInfo.code, 0, plainInfo.stdout);
      assert.doesNotMatch(plainInfo.stdout, /export-size/);
      const plainList = await runTool("nbdinfo", ["--list", `nbd://127.0.0.1:${port}`]);
      assert.notEqual(plainList.code, 0, plainList.stdout);
      assert.doesNotMatch(plainList.stdout, /secure/);
      const plainQemu = await runTool("qemu-io", ["-f", "raw", `nbd://127.0.0.1:${port}/secure`, "-c", "read 0 4k"]);
      assert.notEqual(plainQemu.code, 0, plainQemu.stdout);
      assert.match(plainQemu.stderr, /TLS/);
    });

    it("a client that does not trust the certificate fails the handshake", async function () {
      const untrusted = await runTool("nbdinfo", [tlsUri(storagedriver!.nbdPort, "secure", certificates.untrustedDirectory)]);
      assert.notEqual(untrusted.code, 0);
      assert.match(untrusted.stderr, /certificate/i);
    });
  });

  describe("allow mode, in-process server over a real vPool", function () {
    let vpool: VPool | undefined;
    let server: NbdServer | undefined;

    before(async function () {
      const directory = await tempDirs.make("allow");
      vpool = await openVPool({
        name: "tlsallow", directory: path.join(directory, "vpool"), backend: new LocalObjectStore(path.join(directory, "backend")),
        scoSizeBytes: 4 * MIB, logger: pino({ level: "silent" }),
      });
      await vpool.createVolume("open", 16 * MIB);
      server = await startNbdServer(vpoolExportRegistry(vpool), {
        host: "127.0.0.1", port: 0,
        tls: { mode: "allow", certificateFile: certificates.certificateFile, keyFile: certificates.keyFile },
      });
    });

    after(async function () {
      await server?.close();
      await vpool?.close();
    });

    it("serves plain clients and TLS clients alike, on the same data", async function () {
      const port = server!.port;
      await runToolOk("qemu-io", ["-f", "raw", `nbd://127.0.0.1:${port}/open`, "-c", "write -P 0x3c 4096 8192"]);
      const overTls = await runToolOk("qemu-io", [...qemuTlsArguments(port, "open", certificates.clientDirectory), "-c", "read -P 0x3c 4096 8192"]);
      assert.doesNotMatch(overTls.stdout, /Pattern verification failed/);
      const plain = JSON.parse((await runToolOk("nbdinfo", ["--json", `nbd://127.0.0.1:${port}/open`])).stdout) as { TLS: boolean };
      assert.equal(plain.TLS, false);
      const secured = JSON.parse((await runToolOk("nbdinfo", ["--json", tlsUri(port, "open", certificates.clientDirectory)])).stdout) as { TLS: boolean };
      assert.equal(secured.TLS, true);
    });
  });
});
