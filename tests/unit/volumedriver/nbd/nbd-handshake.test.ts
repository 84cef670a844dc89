// Goal: the NBD server's handshake follows proto.md byte for byte: fixed-newstyle greeting, client flag
// checks, LIST / INFO / GO / EXPORT_NAME (with and without NO_ZEROES), ABORT, unknown options, meta
// contexts, option bounds and timeout, connectionsMax, and STARTTLS in the off, allow and require modes.
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect } from "node:net";
import { startNbdServer } from "../../../../volumedriver/src/frontends/nbd/nbd-server.ts";
import type { NbdServer } from "../../../../volumedriver/src/frontends/nbd/nbd-types.ts";
import { waitFor } from "../../../helpers/volume-assertions.ts";
import { TempDirs } from "../../../helpers/temp-dir.ts";
import { NBD_TEST_DEVICE_SIZE_BYTES, type NbdFixture, startNbdFixture, testLogger } from "./nbd-fixture.ts";
import { NBD, NbdTestClient } from "./nbd-test-client.ts";
import { makeTestCertificate, type TestCertificate } from "./nbd-tls-certificate.ts";

const MIB = 1024 * 1024;
const WRITABLE_FLAGS = NBD.FLAG_HAS_FLAGS | NBD.FLAG_SEND_FLUSH | NBD.FLAG_SEND_FUA | NBD.FLAG_SEND_TRIM
  | NBD.FLAG_SEND_WRITE_ZEROES | NBD.FLAG_SEND_FAST_ZERO | NBD.FLAG_CAN_MULTI_CONN | NBD.FLAG_SEND_CACHE;

function optionHeader(option: number, length: number, magic: bigint = NBD.OPTION_MAGIC): Buffer {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(magic, 0);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(length, 12);
  return header;
}

describe("volumedriver NBD server: handshake", function () {
  this.timeout(30_000);
  const tempDirs = new TempDirs("nbd-handshake");
  let fixture: NbdFixture;
  const clients: NbdTestClient[] = [];

  async function client(options: Parameters<typeof NbdTestClient.connect>[1] = {}): Promise<NbdTestClient> {
    const created = await NbdTestClient.connect(fixture.port, options);
    clients.push(created);
    return created;
  }

  beforeEach(async function () {
    fixture = await startNbdFixture(tempDirs);
  });

  afterEach(async function () {
    for (const each of clients.splice(0)) each.close();
    await fixture.close();
  });

  after(async function () {
    await tempDirs.removeAll();
  });

  it("greets with NBDMAGIC, IHAVEOPT and FIXED_NEWSTYLE | NO_ZEROES", async function () {
    const nbd = await client({ sendClientFlags: false });
    assert.equal(nbd.handshakeFlags, NBD.FLAG_FIXED_NEWSTYLE | NBD.FLAG_NO_ZEROES);
  });

  it("drops a client without NBD_FLAG_C_FIXED_NEWSTYLE (no oldstyle or plain newstyle)", async function () {
    const nbd = await client({ clientFlags: 0 });
    await nbd.waitForClose();
  });

  it("drops a client that sets unknown client flags", async function () {
    const nbd = await client({ clientFlags: NBD.FLAG_C_FIXED_NEWSTYLE | 0x100 });
    await nbd.waitForClose();
  });

  it("NBD_OPT_LIST names every export with its description; data with LIST is NBD_REP_ERR_INVALID", async function () {
    const nbd = await client();
    const exports = await nbd.list();
    assert.deepEqual(exports.map((entry) => entry.name).sort(), ["disk0", "disk0-controlled", "disk0-ro"]);
    assert.equal(exports.find((entry) => entry.name === "disk0")?.description, "the first test vDisk");
    const { final } = await nbd.option(NBD.OPT_LIST, Buffer.from("x"));
    assert.equal(final.type, NBD.REP_ERR_INVALID);
    assert.equal((await nbd.list()).length, 3, "the connection is still usable");
  });

  it("NBD_OPT_INFO returns EXPORT, NAME, DESCRIPTION and BLOCK_SIZE, then GO enters transmission", async function () {
    const nbd = await client();
    const { final, info } = await nbd.infoOrGo(NBD.OPT_INFO, "disk0", [NBD.INFO_NAME, NBD.INFO_DESCRIPTION, NBD.INFO_BLOCK_SIZE]);
    assert.equal(final.type, NBD.REP_ACK);
    assert.equal(info.sizeBytes, NBD_TEST_DEVICE_SIZE_BYTES);
    assert.equal(info.transmissionFlags, WRITABLE_FLAGS, "no DF without structured replies, no READ_ONLY");
    assert.equal(info.name, "disk0");
    assert.equal(info.description, "the first test vDisk");
    assert.deepEqual(info.blockSize, { minimum: 1, preferred: 4096, maximum: 32 * MIB });
    const go = await nbd.infoOrGo(NBD.OPT_GO, "disk0", [NBD.INFO_BLOCK_SIZE]);
    assert.equal(go.final.type, NBD.REP_ACK);
    assert.equal(go.info.transmissionFlags, WRITABLE_FLAGS);
    const reply = await nbd.read(0, 4096);
    assert.equal(reply.error, 0);
    assert.ok(reply.data?.equals(Buffer.alloc(4096)));
  });

  it("INFO and GO for an unknown export get NBD_REP_ERR_UNKNOWN and the handshake goes on", async function () {
    const nbd = await client();
    assert.equal((await nbd.infoOrGo(NBD.OPT_INFO, "nope", [])).final.type, NBD.REP_ERR_UNKNOWN);
    assert.equal((await nbd.infoOrGo(NBD.OPT_GO, "", [])).final.type, NBD.REP_ERR_UNKNOWN, "no default export");
    assert.equal((await nbd.infoOrGo(NBD.OPT_GO, "disk0", [])).final.type, NBD.REP_ACK);
  });

  it("malformed INFO data (name length beyond the option) is NBD_REP_ERR_INVALID", async function () {
    const nbd = await client();
    const data = NbdTestClient.encodeExportQuery("disk0", []);
    data.writeUInt32BE(1000, 0);
    assert.equal((await nbd.option(NBD.OPT_INFO, data)).final.type, NBD.REP_ERR_INVALID);
    const short = Buffer.alloc(3);
    assert.equal((await nbd.option(NBD.OPT_GO, short)).final.type, NBD.REP_ERR_INVALID);
    const extra = Buffer.concat([NbdTestClient.encodeExportQuery("disk0", [NBD.INFO_NAME]), Buffer.alloc(1)]);
    assert.equal((await nbd.option(NBD.OPT_INFO, extra)).final.type, NBD.REP_ERR_INVALID);
  });

  it("a read-only export advertises READ_ONLY and no trim or write zeroes", async function () {
    const nbd = await client();
    const { info } = await nbd.infoOrGo(NBD.OPT_INFO, "disk0-ro", []);
    assert.equal(info.transmissionFlags, NBD.FLAG_HAS_FLAGS | NBD.FLAG_READ_ONLY | NBD.FLAG_SEND_FLUSH | NBD.FLAG_SEND_FUA
      | NBD.FLAG_CAN_MULTI_CONN | NBD.FLAG_SEND_CACHE);
  });

  it("NBD_OPT_EXPORT_NAME with NO_ZEROES replies with size and flags only", async function () {
    const nbd = await client();
    const info = await nbd.exportName("disk0", true);
    assert.equal(info.sizeBytes, NBD_TEST_DEVICE_SIZE_BYTES);
    assert.equal(info.transmissionFlags, WRITABLE_FLAGS);
    assert.equal((await nbd.write(0, Buffer.alloc(512, 7))).error, 0);
    assert.ok((await nbd.read(0, 512)).data?.equals(Buffer.alloc(512, 7)));
  });

  it("NBD_OPT_EXPORT_NAME without NO_ZEROES adds the 124 zero bytes", async function () {
    const nbd = await client({ clientFlags: NBD.FLAG_C_FIXED_NEWSTYLE });
    const info = await nbd.exportName("disk0", false);
    assert.equal(info.sizeBytes, NBD_TEST_DEVICE_SIZE_BYTES);
    assert.equal((await nbd.read(0, 16)).error, 0, "the stream is in step after the padding");
  });

  it("NBD_OPT_EXPORT_NAME of an unknown export ends the session", async function () {
    const nbd = await client();
    nbd.sendOption(NBD.OPT_EXPORT_NAME, Buffer.from("nope"));
    await nbd.waitForClose();
  });

  it("unknown options get NBD_REP_ERR_UNSUP and the next option is still parsed", async function () {
    const nbd = await client();
    const { final } = await nbd.option(42, Buffer.from("some data the server must skip"));
    assert.equal(final.type, NBD.REP_ERR_UNSUP);
    assert.equal((await nbd.option(4)).final.type, NBD.REP_ERR_UNSUP, "PEEK_EXPORT is withdrawn");
    assert.equal((await nbd.list()).length, 3);
  });

  it("NBD_OPT_ABORT is acknowledged and the server closes", async function () {
    const nbd = await client();
    const { final } = await nbd.option(NBD.OPT_ABORT);
    assert.equal(final.type, NBD.REP_ACK);
    await nbd.waitForClose();
  });

  it("STRUCTURED_REPLY is acknowledged, adds SEND_DF; with data it is NBD_REP_ERR_INVALID", async function () {
    const nbd = await client();
    assert.equal((await nbd.option(NBD.OPT_STRUCTURED_REPLY, Buffer.from("x"))).final.type, NBD.REP_ERR_INVALID);
    assert.equal(await nbd.negotiateStructuredReplies(), NBD.REP_ACK);
    const { info } = await nbd.infoOrGo(NBD.OPT_INFO, "disk0", []);
    assert.equal(info.transmissionFlags, WRITABLE_FLAGS | NBD.FLAG_SEND_DF);
  });

  it("LIST_META_CONTEXT offers base:allocation for no query, 'base:' and 'base:allocation' only", async function () {
    const nbd = await client();
    await nbd.negotiateStructuredReplies();
    const all = await nbd.metaContext(NBD.OPT_LIST_META_CONTEXT, "disk0", []);
    assert.equal(all.final, NBD.REP_ACK);
    assert.deepEqual(all.contexts, [{ id: 0, name: "base:allocation" }]);
    assert.deepEqual((await nbd.metaContext(NBD.OPT_LIST_META_CONTEXT, "disk0", ["base:"])).contexts.map((each) => each.name),
      ["base:allocation"]);
    const other = await nbd.metaContext(NBD.OPT_LIST_META_CONTEXT, "disk0", ["qemu:dirty-bitmap:x", "base:nope"]);
    assert.equal(other.final, NBD.REP_ACK);
    assert.deepEqual(other.contexts, [], "unknown namespaces and leaf names are ignored");
    assert.equal((await nbd.metaContext(NBD.OPT_LIST_META_CONTEXT, "nope", [])).final, NBD.REP_ERR_UNKNOWN);
  });

  it("SET_META_CONTEXT needs structured replies, selects base:allocation with an id, ignores 'base:'", async function () {
    const nbd = await client();
    assert.equal((await nbd.metaContext(NBD.OPT_SET_META_CONTEXT, "disk0", ["base:allocation"])).final, NBD.REP_ERR_INVALID);
    await nbd.negotiateStructuredReplies();
    const wildcard = await nbd.metaContext(NBD.OPT_SET_META_CONTEXT, "disk0", ["base:"]);
    assert.deepEqual(wildcard.contexts, [], "'base:' selects nothing in SET");
    const selected = await nbd.metaContext(NBD.OPT_SET_META_CONTEXT, "disk0", ["base:allocation"]);
    assert.equal(selected.final, NBD.REP_ACK);
    assert.equal(selected.contexts.length, 1);
    assert.equal(selected.contexts[0]?.name, "base:allocation");
    const malformed = NbdTestClient.encodeMetaContextQuery("disk0", ["base:allocation"]);
    malformed.writeUInt32BE(5, 4 + 5); // query count 5, only one present
    assert.equal((await nbd.option(NBD.OPT_SET_META_CONTEXT, malformed)).final.type, NBD.REP_ERR_INVALID);
  });

  it("NBD_OPT_STARTTLS with TLS off is NBD_REP_ERR_POLICY", async function () {
    const nbd = await client();
    assert.equal((await nbd.option(NBD.OPT_STARTTLS)).final.type, NBD.REP_ERR_POLICY);
    assert.equal((await nbd.list()).length, 3);
  });

  it("a bad option magic is a hard disconnect", async function () {
    const nbd = await client();
    nbd.rawWrite(optionHeader(NBD.OPT_LIST, 0, 0x1234n));
    await nbd.waitForClose();
  });

  it("an option longer than 64 KiB is a hard disconnect, without waiting for its data", async function () {
    const nbd = await client();
    nbd.rawWrite(optionHeader(NBD.OPT_GO, 65 * 1024));
    await nbd.waitForClose();
  });

  it("more options than the bound is a hard disconnect", async function () {
    const nbd = await client();
    const many = Buffer.concat(Array.from({ length: 300 }, () => optionHeader(42, 0)));
    nbd.rawWrite(many);
    await nbd.waitForClose();
  });

  it("a handshake not finished within handshakeTimeoutMs is dropped", async function () {
    await fixture.close();
    fixture = await startNbdFixture(tempDirs, { handshakeTimeoutMs: 200 });
    const nbd = await client();
    const started = Date.now();
    await nbd.waitForClose(5_000);
    assert.ok(Date.now() - started >= 150, "not before the timeout");
    const entered = await client();
    await entered.go("disk0");
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal((await entered.read(0, 512)).error, 0, "the timeout does not apply in transmission");
  });

  it("connections beyond connectionsMax are refused at accept; a freed slot is reused", async function () {
    await fixture.close();
    fixture = await startNbdFixture(tempDirs, { connectionsMax: 2 });
    const first = await client();
    await client();
    const third = connect({ host: "127.0.0.1", port: fixture.port });
    third.on("data", () => assert.fail("the refused connection must get no greeting"));
    await once(third, "close");
    first.close();
    assert.ok(await waitFor(() => fixture.server.connectionCount() === 1, 5_000));
    const again = await client();
    assert.equal((await again.list()).length, 3);
  });

  it("close() drops connections still negotiating and ends those in transmission", async function () {
    const negotiating = await client();
    const transmitting = await client();
    await transmitting.go("disk0");
    await fixture.server.close();
    await negotiating.waitForClose();
    await transmitting.waitForClose();
    assert.equal(fixture.server.connectionCount(), 0);
  });

  it("settings outside their bounds are refused at start", async function () {
    await assert.rejects(startNbdServer(fixture.registry, { host: "127.0.0.1", port: 0, requestSizeBytesMax: 100 }), RangeError);
    await assert.rejects(startNbdServer(fixture.registry, { host: "127.0.0.1", port: 0, inFlightRequestsMax: 0 }), RangeError);
  });

  describe("TLS", function () {
    let certificate: TestCertificate | undefined;
    let tlsServer: NbdServer | undefined;

    before(async function () {
      certificate = await makeTestCertificate(await tempDirs.make("tls"));
      if (certificate === undefined) this.skip();
    });

    afterEach(async function () {
      if (tlsServer !== undefined) await tlsServer.close();
      tlsServer = undefined;
    });

    async function startTlsServer(mode: "allow" | "require"): Promise<number> {
      const { certificateFile, keyFile } = certificate as TestCertificate;
      tlsServer = await startNbdServer(fixture.registry, {
        host: "127.0.0.1", port: 0, tls: { mode, certificateFile, keyFile }, logger: testLogger(),
      });
      return tlsServer.port;
    }

    async function tlsClient(port: number): Promise<NbdTestClient> {
      const created = await NbdTestClient.connect(port);
      clients.push(created);
      return created;
    }

    it("allow mode: plain works; STARTTLS upgrades, drops earlier structured replies, and data flows over TLS", async function () {
      const port = await startTlsServer("allow");
      const plain = await tlsClient(port);
      await plain.go("disk0");
      assert.equal((await plain.write(0, Buffer.alloc(4096, 1))).error, 0);

      const nbd = await tlsClient(port);
      await nbd.negotiateStructuredReplies();
      assert.equal(await nbd.startTls((certificate as TestCertificate).ca), NBD.REP_ACK);
      nbd.structuredReplies = false;
      const { info } = await nbd.infoOrGo(NBD.OPT_INFO, "disk0", []);
      assert.equal(info.transmissionFlags & NBD.FLAG_SEND_DF, 0, "structured replies negotiated before STARTTLS are forgotten");
      assert.equal((await nbd.option(NBD.OPT_STARTTLS)).final.type, NBD.REP_ERR_INVALID, "a second STARTTLS is invalid");
      await nbd.go("disk0", { structured: true, baseAllocation: true });
      const payload = Buffer.alloc(64 * 1024, 0x5a);
      assert.equal((await nbd.write(4096, payload)).error, 0);
      const reply = await nbd.read(0, 4096 + payload.length);
      assert.ok(reply.data?.equals(Buffer.concat([Buffer.alloc(4096, 1), payload])));
      assert.equal((await nbd.blockStatus(0, 1 * MIB)).extents?.[0]?.flags, 0);
      await nbd.disconnect();
    });

    it("require mode: options before STARTTLS get NBD_REP_ERR_TLS_REQD, EXPORT_NAME ends the session", async function () {
      const port = await startTlsServer("require");
      const nbd = await tlsClient(port);
      assert.equal((await nbd.option(NBD.OPT_LIST)).final.type, NBD.REP_ERR_TLS_REQD);
      assert.equal((await nbd.option(NBD.OPT_STRUCTURED_REPLY)).final.type, NBD.REP_ERR_TLS_REQD);
      assert.equal((await nbd.infoOrGo(NBD.OPT_INFO, "disk0", [])).final.type, NBD.REP_ERR_TLS_REQD);
      assert.equal((await nbd.infoOrGo(NBD.OPT_GO, "disk0", [])).final.type, NBD.REP_ERR_TLS_REQD);
      assert.equal((await nbd.option(42)).final.type, NBD.REP_ERR_TLS_REQD, "even unknown options");
      nbd.sendOption(NBD.OPT_EXPORT_NAME, Buffer.from("disk0"));
      await nbd.waitForClose();

      const secured = await tlsClient(port);
      assert.equal(await secured.startTls((certificate as TestCertificate).ca), NBD.REP_ACK);
      assert.equal((await secured.list()).length, 3, "after STARTTLS nothing is refused");
      await secured.go("disk0");
      assert.equal((await secured.write(0, Buffer.alloc(512, 9), NBD.CMD_FLAG_FUA)).error, 0);
      assert.ok((await secured.read(0, 512)).data?.equals(Buffer.alloc(512, 9)));
    });

    it("a failed TLS handshake closes the connection and leaves the server serving", async function () {
      const port = await startTlsServer("require");
      const nbd = await tlsClient(port);
      assert.equal((await nbd.option(NBD.OPT_STARTTLS)).final.type, NBD.REP_ACK);
      nbd.rawWrite(Buffer.from("this is not a TLS ClientHello, it is garbage\r\n"));
      await nbd.waitForClose();
      const good = await tlsClient(port);
      assert.equal(await good.startTls((certificate as TestCertificate).ca), NBD.REP_ACK);
      await good.go("disk0");
    });
  });
});
