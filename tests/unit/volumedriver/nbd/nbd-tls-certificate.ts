// Goal: a throw-away self-signed certificate for 127.0.0.1 made with openssl for the NBD TLS tests.
// Without openssl the TLS tests are skipped with a printed reason, except under CI=true, where a
// missing openssl is a failure (CI must exercise TLS).
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export interface TestCertificate {
  certificateFile: string;
  keyFile: string;
  /** The certificate itself, trusted by the test client as its CA. */
  ca: Buffer;
}

/** Creates cert.pem and key.pem in `directory`; undefined (with the reason printed) if openssl is missing outside CI. */
export async function makeTestCertificate(directory: string): Promise<TestCertificate | undefined> {
  const certificateFile = join(directory, "cert.pem");
  const keyFile = join(directory, "key.pem");
  try {
    await execFileAsync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", keyFile, "-out", certificateFile,
    ]);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT" && process.env.CI !== "true") {
      console.log("      skipping NBD TLS tests: openssl is not installed");
      return undefined;
    }
    throw error;
  }
  return { certificateFile, keyFile, ca: await readFile(certificateFile) };
}
