// Goal: libiscsi's conformance suite passes on our target. iscsi-test-cu runs the whole ALL family
// (destructive tests allowed, the same LUN given twice so the multipath tests run with two I_T
// nexuses) against a vDisk served by a StorageDriver process and, in the same test, against tgt on
// a file LUN of the same size. Ours must pass every test (so every test tgt passes), and the
// COMPARE AND WRITE, thin-provisioning (UNMAP, WRITE SAME, GET LBA STATUS) and persistent
// reservation families must have run rather than been skipped as unimplemented. Both tallies are
// printed. Skipped tests count as passed in CUnit; the skip reasons are printed per target.
import assert from "node:assert/strict";
import { startTgt, type TgtTarget } from "../helpers/iscsi-peers.ts";
import { NbdStorageDriver, requireTool, runTool } from "../helpers/nbd-tools.ts";
import { TempDirs } from "../helpers/temp-dir.ts";

const LUN_SIZE_BYTES = 64 * 1024 * 1024;
const SUITE_TIMEOUT_MS = 600_000;
const TGT_TARGET_NAME = "iqn.2026-11.org.openvstorage.test:tgt-conformance";
/** Suites (families) the issue names: COMPARE AND WRITE, thin provisioning, persistent reservations. */
const REQUIRED_FAMILIES = [/^CompareAndWrite$/, /^Unmap$/, /^WriteSame1[06]$/, /^GetLBAStatus$/, /^Prin/, /^Prout/];
/**
 * Skips allowed in those families: tests that need more than one logical block per physical block
 * (we report one, as tgt does) and WRITE SAME of 0 blocks (we set WSNZ). Anything else, such as
 * "not implemented" or "fully provisioned", means the family did not really run.
 */
const ALLOWED_SKIP = /LBPPB < 2|does not support 0-blocks/;

interface TestOutcome {
  /** "Suite.Test". */
  name: string;
  passed: boolean;
  /** The [SKIPPED] reasons the test printed before its verdict (a skipped test still "passes"). */
  skipReasons: string[];
}

interface SuiteRun {
  outcomes: Map<string, TestOutcome>;
  summary: { ran: number; passed: number; failed: number };
  output: string;
}

/**
 * Parses iscsi-test-cu's verbose output: "Suite: NAME", then per test "  Test: NAME ..." followed by
 * its messages and the verdict "passed" or "FAILED" (right after the dots or at the start of a
 * line). ALL runs some suites more than once (they belong to several families): a test fails if any
 * of its runs failed. The parse is checked against CUnit's own Run Summary.
 */
function parseTestCuOutput(output: string): SuiteRun {
  const outcomes = new Map<string, TestOutcome>();
  let suite: string | undefined;
  let current: { name: string; text: string[] } | undefined;
  let runs = 0;
  let runsPassed = 0;
  const finish = (): void => {
    if (current === undefined) return;
    const verdictIndex = current.text.findIndex((line) => /^(passed|FAILED)(\s|$)/.test(line));
    assert.ok(verdictIndex >= 0, `no verdict for ${current.name} in:\n${current.text.join("\n")}`);
    const passed = current.text[verdictIndex].startsWith("passed");
    const skipReasons = current.text.slice(0, verdictIndex).flatMap((line) => {
      const match = /\[SKIPPED\]\s*(.*)$/.exec(line);
      return match === null ? [] : [match[1].trim()];
    });
    runs += 1;
    if (passed) runsPassed += 1;
    const previous = outcomes.get(current.name);
    outcomes.set(current.name, {
      name: current.name,
      passed: passed && (previous?.passed ?? true),
      skipReasons: [...new Set([...(previous?.skipReasons ?? []), ...skipReasons])],
    });
    current = undefined;
  };
  const lines = output.split("\n");
  for (const line of lines) {
    const suiteMatch = /^Suite: (\S+)/.exec(line);
    const testMatch = /^ {2}Test: (\S+) \.\.\.(.*)$/.exec(line);
    if (suiteMatch !== null) {
      finish();
      suite = suiteMatch[1];
    } else if (testMatch !== null) {
      finish();
      assert.ok(suite !== undefined, `test ${testMatch[1]} outside a suite`);
      current = { name: `${suite}.${testMatch[1]}`, text: [testMatch[2].trim()] };
    } else if (/^Run Summary:/.test(line)) {
      finish();
    } else if (current !== undefined) {
      current.text.push(line.trim());
    }
  }
  finish();
  const tests = /^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(output);
  assert.ok(tests !== null, `iscsi-test-cu printed no Run Summary:\n${output.slice(-2000)}`);
  const summary = { ran: Number(tests[2]), passed: Number(tests[3]), failed: Number(tests[4]) };
  assert.equal(runs, summary.ran, "parsed test runs differ from CUnit's Run Summary");
  assert.equal(runsPassed, summary.passed, "parsed passes differ from CUnit's Run Summary");
  return { outcomes, summary, output };
}

async function runConformance(url: string, cwd: string): Promise<SuiteRun> {
  // -d: destructive tests; -v: the verbose listing parsed above; the second URL enables MultipathIO.
  // Its exit code is 1 when any test failed: the parsed outcomes and the Run Summary tell more.
  const result = await runTool("iscsi-test-cu", ["-d", "-v", url, url], { timeoutMs: SUITE_TIMEOUT_MS, cwd });
  assert.ok(result.code === 0 || result.code === 1, `iscsi-test-cu exited with ${result.code}: ${result.stderr.slice(-2000)}`);
  return parseTestCuOutput(result.stdout + result.stderr);
}

function tally(label: string, run: SuiteRun): string {
  const outcomes = [...run.outcomes.values()];
  const failed = outcomes.filter((outcome) => !outcome.passed).map((outcome) => outcome.name);
  const skipped = outcomes.filter((outcome) => outcome.passed && outcome.skipReasons.length > 0);
  const reasons = new Map<string, number>();
  for (const outcome of skipped) for (const reason of outcome.skipReasons) reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  return [
    `      ${label}: ${run.summary.passed}/${run.summary.ran} test runs passed (${outcomes.length} distinct tests, `
      + `${outcomes.length - failed.length} passed of which ${skipped.length} skipped, ${failed.length} failed)`,
    ...(failed.length > 0 ? [`        failed: ${failed.join(", ")}`] : []),
    ...[...reasons].map(([reason, count]) => `        skipped ${count}×: ${reason}`),
  ].join("\n");
}

describe("iSCSI conformance: iscsi-test-cu ALL against our target and tgt", function () {
  this.timeout(2 * SUITE_TIMEOUT_MS + 120_000);
  const tempDirs = new TempDirs("iscsi-conformance");
  let storagedriver: NbdStorageDriver | undefined;
  let tgt: TgtTarget | undefined;

  before(function () {
    requireTool(this, "iscsi-test-cu", "tgtd", "tgtadm");
  });

  after(async () => {
    await tgt?.stop();
    if (storagedriver !== undefined) await storagedriver.stop(60_000);
    await tempDirs.removeAll();
  });

  it("test_conformance_ours_passes_every_test_and_the_required_families_run", async () => {
    storagedriver = await NbdStorageDriver.start(await tempDirs.make(), { vpool: "conformance", iscsi: true, logLevel: "warn" });
    await storagedriver.createVdisk("conformance", LUN_SIZE_BYTES);
    const ours = await runConformance(storagedriver.iscsiUrl(0), await tempDirs.make());
    await storagedriver.stop(60_000);
    storagedriver = undefined;

    tgt = await startTgt(await tempDirs.make(), TGT_TARGET_NAME, LUN_SIZE_BYTES);
    const theirs = await runConformance(tgt.url, await tempDirs.make());
    await tgt.stop();
    tgt = undefined;

    console.log(tally("ours", ours));
    console.log(tally("tgt (file LUN)", theirs));

    const passedByTgtFailedByUs = [...theirs.outcomes.values()]
      .filter((outcome) => outcome.passed && ours.outcomes.get(outcome.name)?.passed !== true).map((outcome) => outcome.name);
    assert.deepEqual(passedByTgtFailedByUs, [], "tests tgt passes and we do not");
    const failedByUs = [...ours.outcomes.values()].filter((outcome) => !outcome.passed).map((outcome) => outcome.name);
    assert.deepEqual(failedByUs, [], "tests we fail");

    for (const family of REQUIRED_FAMILIES) {
      const members = [...ours.outcomes.values()].filter((outcome) => family.test(outcome.name.split(".")[0]));
      assert.ok(members.length > 0, `no test of family ${family} ran`);
      for (const outcome of members) {
        const foreign = outcome.skipReasons.filter((reason) => !ALLOWED_SKIP.test(reason));
        assert.deepEqual(foreign, [], `${outcome.name} was skipped: the family ${family} did not really run`);
      }
      assert.ok(members.some((outcome) => outcome.skipReasons.length === 0), `every test of family ${family} was skipped`);
    }
  });
});
