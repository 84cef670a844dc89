// CHAP authentication in the security negotiation stage (RFC 7143 §12.1.3 with RFC 1994, MD5 only):
// the target sends CHAP_A, CHAP_I and a random CHAP_C; the initiator answers CHAP_N and
// CHAP_R = MD5(CHAP_I || secret || CHAP_C), and may ask the target to prove itself in turn (mutual
// CHAP) with its own CHAP_I and CHAP_C, which the target answers with CHAP_N and CHAP_R. Every
// failure is an authentication failure (Status 0x0201); no reason goes back to the initiator.
import { createHash, randomBytes as cryptoRandomBytes, timingSafeEqual } from "node:crypto";
import { LoginError } from "./iscsi-errors.ts";
import { CHAP_CHALLENGE_BYTES } from "./iscsi-settings.ts";
import { encodeBinary, parseBinary, splitList, type TextPair } from "./iscsi-text.ts";
import type { IscsiChapSettings } from "./iscsi-types.ts";

/** RFC 1994 §2.2 / RFC 7143 §12.1.3: CHAP_A=5 is MD5, the only algorithm iSCSI requires. */
export const CHAP_ALGORITHM_MD5 = "5";
/** RFC 7143 §12.1.3: challenges longer than this are refused. */
export const CHAP_CHALLENGE_BYTES_MAX = 1024;

/** RFC 1994 §4.1: Response = MD5(Identifier || secret || Challenge). */
export function chapResponse(identifier: number, secret: string, challenge: Buffer): Buffer {
  return createHash("md5").update(Buffer.from([identifier & 0xff])).update(secret, "utf8").update(challenge).digest();
}

function authenticationFailed(message: string): LoginError {
  return new LoginError("AuthenticationFailed", message);
}

type ChapState = "await-algorithm" | "await-response" | "done";

/** One CHAP exchange, driven by the keys of successive security-stage Login Requests. */
export class ChapAuthenticator {
  private state: ChapState = "await-algorithm";
  private identifier = 0;
  private challenge: Buffer = Buffer.alloc(0);

  constructor(
    private readonly settings: IscsiChapSettings,
    private readonly randomBytes: (count: number) => Buffer = cryptoRandomBytes,
  ) {}

  get done(): boolean {
    return this.state === "done";
  }

  /** Whether this exchange expects `key` now (CHAP keys outside their step are a failure). */
  static isChapKey(key: string): boolean {
    return key.startsWith("CHAP_");
  }

  /**
   * Consumes the CHAP keys of one Login Request and returns the keys to answer with. Throws a
   * LoginError(AuthenticationFailed) on a wrong or malformed answer.
   */
  step(keys: ReadonlyMap<string, string>): TextPair[] {
    switch (this.state) {
      case "await-algorithm":
        return this.offerChallenge(keys);
      case "await-response":
        return this.verifyResponse(keys);
      case "done":
        if ([...keys.keys()].some(ChapAuthenticator.isChapKey)) throw authenticationFailed("CHAP keys after CHAP completed");
        return [];
    }
  }

  private offerChallenge(keys: ReadonlyMap<string, string>): TextPair[] {
    const algorithms = keys.get("CHAP_A");
    // The initiator may send AuthMethod alone first; CHAP_A then comes in the next PDU.
    if (algorithms === undefined) {
      if ([...keys.keys()].some(ChapAuthenticator.isChapKey)) throw authenticationFailed("CHAP keys before CHAP_A");
      return [];
    }
    if (!splitList(algorithms).includes(CHAP_ALGORITHM_MD5)) throw authenticationFailed(`CHAP_A=${algorithms} offers no MD5`);
    this.identifier = this.randomBytes(1)[0];
    this.challenge = this.randomBytes(CHAP_CHALLENGE_BYTES);
    this.state = "await-response";
    return [
      { key: "CHAP_A", value: CHAP_ALGORITHM_MD5 },
      { key: "CHAP_I", value: String(this.identifier) },
      { key: "CHAP_C", value: encodeBinary(this.challenge) },
    ];
  }

  private verifyResponse(keys: ReadonlyMap<string, string>): TextPair[] {
    const name = keys.get("CHAP_N");
    const responseText = keys.get("CHAP_R");
    if (name === undefined || responseText === undefined) throw authenticationFailed("CHAP_N or CHAP_R missing");
    const response = parseBinary(responseText);
    if (response === undefined || response.length !== 16) throw authenticationFailed("CHAP_R is not a 16-byte MD5 digest");
    const expected = chapResponse(this.identifier, this.settings.initiator.secret, this.challenge);
    const nameMatches = name === this.settings.initiator.username;
    if (!timingSafeEqual(response, expected) || !nameMatches) throw authenticationFailed(`CHAP response of ${JSON.stringify(name)} does not verify`);
    const mutualIdentifier = keys.get("CHAP_I");
    const mutualChallengeText = keys.get("CHAP_C");
    if (mutualIdentifier === undefined && mutualChallengeText === undefined) {
      if (this.settings.mutualRequired === true) throw authenticationFailed("mutual CHAP is required but the initiator did not ask for it");
      this.state = "done";
      return [];
    }
    return this.answerMutual(mutualIdentifier, mutualChallengeText);
  }

  private answerMutual(identifierText: string | undefined, challengeText: string | undefined): TextPair[] {
    const target = this.settings.target;
    if (target === undefined) throw authenticationFailed("the initiator asked for mutual CHAP but the target has no mutual credentials");
    if (identifierText === undefined || challengeText === undefined) throw authenticationFailed("mutual CHAP needs both CHAP_I and CHAP_C");
    if (!/^[0-9]{1,3}$/.test(identifierText) || Number(identifierText) > 255) throw authenticationFailed(`CHAP_I=${identifierText} is not 0-255`);
    const challenge = parseBinary(challengeText);
    if (challenge === undefined || challenge.length > CHAP_CHALLENGE_BYTES_MAX) throw authenticationFailed("malformed mutual CHAP_C");
    // RFC 7143 §12.1.3: a challenge equal to ours is a reflection attack.
    if (challenge.equals(this.challenge)) throw authenticationFailed("the initiator reflected the target's CHAP challenge");
    this.state = "done";
    return [
      { key: "CHAP_N", value: target.username },
      { key: "CHAP_R", value: encodeBinary(chapResponse(Number(identifierText), target.secret, challenge)) },
    ];
  }
}
