// The login phase of one connection (RFC 7143 §6.3, §11.12-13): security negotiation (AuthMethod,
// CHAP), operational negotiation (the keys of §13) and the move to the full feature phase. It turns
// each Login Request into a Login Response; the connection numbers them and sends them. Failures
// are LoginErrors whose status class/detail come from iscsi-errors.ts; after one the connection
// closes. Every key is negotiated at most once per login (§6.2).
import { ChapAuthenticator } from "./iscsi-chap.ts";
import { LoginError } from "./iscsi-errors.ts";
import { LOGIN_STAGE, type LoginRequestPdu, type LoginResponsePdu } from "./iscsi-pdu.ts";
import {
  DEFAULT_TIME_2_RETAIN_SECONDS, DEFAULT_TIME_2_WAIT_SECONDS, FIRST_BURST_LENGTH_BYTES_RFC_DEFAULT,
  MAX_BURST_LENGTH_BYTES_RFC_DEFAULT, MAX_RECV_DATA_SEGMENT_LENGTH_BYTES_RFC_DEFAULT, NEGOTIATED_LENGTH_BYTES_MAX,
  NEGOTIATED_LENGTH_BYTES_MIN, type ResolvedIscsiSettings,
} from "./iscsi-settings.ts";
import { parseNumber, splitList, TextAccumulator, TextFormatError, type TextPair } from "./iscsi-text.ts";
import type { IscsiChapSettings, IscsiTargetEntry, IscsiTargetRegistry } from "./iscsi-types.ts";

/** RFC 7143 §11.12.4: the protocol version is 0x00. */
export const ISCSI_VERSION = 0x00;
/** RFC 7143 §4.2.7.1: iSCSI names are at most 223 bytes. */
export const ISCSI_NAME_BYTES_MAX = 223;
/** RFC 7144 §7.1: iSCSIProtocolLevel 1 is RFC 7143. */
export const ISCSI_PROTOCOL_LEVEL = 1;

export type SessionType = "Discovery" | "Normal";

/** The operational parameters of a session and connection after login (RFC 7143 §13). */
export interface NegotiatedParameters {
  headerDigest: boolean;
  dataDigest: boolean;
  /** The initiator's MaxRecvDataSegmentLength: the largest data segment we may send. */
  initiatorMaxRecvDataSegmentLengthBytes: number;
  /** Ours, as declared: the largest data segment the initiator may send. */
  targetMaxRecvDataSegmentLengthBytes: number;
  maxBurstLengthBytes: number;
  firstBurstLengthBytes: number;
  immediateData: boolean;
  initialR2T: boolean;
  maxOutstandingR2T: number;
  dataPduInOrder: boolean;
  dataSequenceInOrder: boolean;
  defaultTime2WaitSeconds: number;
  defaultTime2RetainSeconds: number;
}

/** What a successful login established; the server turns it into a session. */
export interface LoginOutcome {
  sessionType: SessionType;
  initiatorName: string;
  initiatorAlias: string | undefined;
  isid: Buffer;
  cid: number;
  /** Only for Normal sessions. */
  target: IscsiTargetEntry | undefined;
  parameters: NegotiatedParameters;
  /** The CmdSN of the login: the first ExpCmdSN of the session (RFC 7143 §4.2.2.1). */
  initialCmdSN: number;
}

export interface LoginHost {
  registry: IscsiTargetRegistry;
  settings: ResolvedIscsiSettings;
  /**
   * The login is about to enter the full feature phase: create (or reinstate) the session and
   * return its TSIH. Throws a LoginError (e.g. OutOfResources when sessionsMax is reached).
   */
  admitSession(outcome: LoginOutcome): number;
  /** Whether a session with this TSIH exists (a login adding a connection names one). */
  sessionExists(tsih: number): boolean;
}

/** One Login Response without its sequence numbers, which the connection fills in. */
export type LoginResponseDraft = Omit<LoginResponsePdu, "statSN" | "expCmdSN" | "maxCmdSN">;

export interface LoginStep {
  response: LoginResponseDraft;
  /** Set when this response enters the full feature phase. */
  outcome?: LoginOutcome;
}

type Answer = string | undefined;

/** Keys we understand and answer with NotUnderstood never; everything else gets NotUnderstood (RFC 7143 §6.2). */
const DECLARATIVE_IGNORED_KEYS = new Set(["InitiatorAlias", "TargetAddress", "TargetPortalGroupTag", "TargetAlias"]);

function yesNo(value: string, key: string): boolean {
  if (value === "Yes") return true;
  if (value === "No") return false;
  throw new LoginError("InitiatorError", `${key}=${value} is neither Yes nor No`);
}

function lengthValue(key: string, value: string, min = NEGOTIATED_LENGTH_BYTES_MIN, max = NEGOTIATED_LENGTH_BYTES_MAX): number {
  const parsed = parseNumber(value);
  if (parsed === undefined || parsed < min || parsed > max) throw new LoginError("InitiatorError", `${key}=${value} is outside ${min}-${max}`);
  return parsed;
}

export class LoginNegotiation {
  private stage: number | undefined;
  private first: LoginRequestPdu | undefined;
  private sessionType: SessionType = "Normal";
  private initiatorName = "";
  private initiatorAlias: string | undefined;
  private target: IscsiTargetEntry | undefined;
  private chapSettings: IscsiChapSettings | undefined;
  private chap: ChapAuthenticator | undefined;
  /** AuthMethod=None agreed, or CHAP finished, or no authentication required. */
  private authenticated = false;
  private readonly negotiatedKeys = new Set<string>();
  /** InitiatorName, InitiatorAlias, SessionType and TargetName as the leading request gave them. */
  private readonly identityValues = new Map<string, string>();
  private readonly text = new TextAccumulator();
  private declaredMaxRecvDataSegmentLength = false;
  private declaredPortalGroup = false;
  private readonly parameters: NegotiatedParameters;

  constructor(private readonly host: LoginHost, private readonly randomBytes?: (count: number) => Buffer) {
    const settings = host.settings;
    // RFC 7143 §13 defaults for keys the initiator never sends.
    this.parameters = {
      headerDigest: false,
      dataDigest: false,
      initiatorMaxRecvDataSegmentLengthBytes: MAX_RECV_DATA_SEGMENT_LENGTH_BYTES_RFC_DEFAULT,
      targetMaxRecvDataSegmentLengthBytes: MAX_RECV_DATA_SEGMENT_LENGTH_BYTES_RFC_DEFAULT,
      maxBurstLengthBytes: Math.min(MAX_BURST_LENGTH_BYTES_RFC_DEFAULT, settings.maxBurstLengthBytes),
      firstBurstLengthBytes: Math.min(FIRST_BURST_LENGTH_BYTES_RFC_DEFAULT, settings.firstBurstLengthBytes),
      immediateData: settings.immediateData,
      initialR2T: true,
      maxOutstandingR2T: 1,
      dataPduInOrder: true,
      dataSequenceInOrder: true,
      defaultTime2WaitSeconds: DEFAULT_TIME_2_WAIT_SECONDS,
      defaultTime2RetainSeconds: DEFAULT_TIME_2_RETAIN_SECONDS,
    };
  }

  /** Handles one Login Request; throws LoginError on failure. */
  receive(request: LoginRequestPdu): LoginStep {
    if (this.first === undefined) this.checkLeadingRequest(request);
    else this.checkFollowingRequest(request);
    let pairs: TextPair[] | undefined;
    try {
      pairs = this.text.append(request.data ?? Buffer.alloc(0), request.continue);
    } catch (error) {
      if (error instanceof TextFormatError) throw new LoginError("InitiatorError", error.message);
      throw error;
    }
    // RFC 7143 §11.12.2: a Login Request with C set gets an empty response asking for the rest.
    if (pairs === undefined) return { response: this.draft(request, false, Buffer.alloc(0)) };
    const keys = new Map<string, string>();
    for (const pair of pairs) {
      // libiscsi repeats InitiatorName and SessionType when it enters the operational stage; the same
      // value again changes nothing, a different one is an error.
      const identity = this.identityValues.get(pair.key);
      if (identity !== undefined && identity === pair.value && !keys.has(pair.key)) continue;
      if (keys.has(pair.key) || this.negotiatedKeys.has(pair.key)) {
        throw new LoginError("InitiatorError", `key ${pair.key} sent more than once during login (RFC 7143 §6.2)`);
      }
      keys.set(pair.key, pair.value);
    }
    if (this.stage === undefined) this.identify(request, keys);
    const answers: TextPair[] = [];
    this.declare(answers);
    if (request.currentStage === LOGIN_STAGE.SECURITY_NEGOTIATION) this.security(keys, answers);
    for (const [key, value] of keys) {
      if (key.startsWith("CHAP_") || key === "AuthMethod") continue;
      this.negotiatedKeys.add(key);
      const answer = this.negotiate(key, value);
      if (answer !== undefined) answers.push({ key, value: answer });
    }
    const transit = request.transit && this.mayLeave(request.currentStage);
    if (transit && request.nextStage === LOGIN_STAGE.FULL_FEATURE_PHASE && !this.declaredMaxRecvDataSegmentLength) this.declareOperational(answers);
    if (request.currentStage === LOGIN_STAGE.OPERATIONAL_NEGOTIATION && !this.declaredMaxRecvDataSegmentLength) this.declareOperational(answers);
    const response = this.draft(request, transit, Buffer.from(answers.map((pair) => `${pair.key}=${pair.value}\0`).join(""), "utf8"));
    if (transit) this.stage = request.nextStage;
    if (!transit || request.nextStage !== LOGIN_STAGE.FULL_FEATURE_PHASE) return { response };
    const outcome: LoginOutcome = {
      sessionType: this.sessionType, initiatorName: this.initiatorName, initiatorAlias: this.initiatorAlias,
      isid: (this.first as LoginRequestPdu).isid, cid: request.cid, target: this.target, parameters: { ...this.parameters },
      initialCmdSN: (this.first as LoginRequestPdu).cmdSN,
    };
    response.tsih = this.host.admitSession(outcome);
    return { response, outcome };
  }

  /** The Login Response for a failure (RFC 7143 §11.13: T, CSG, NSG reserved, no data). */
  static failureResponse(request: LoginRequestPdu, statusClass: number, statusDetail: number): LoginResponseDraft {
    return {
      kind: "login-response", transit: false, continue: false, currentStage: 0, nextStage: 0, versionMax: ISCSI_VERSION,
      versionActive: ISCSI_VERSION, isid: request.isid, tsih: request.tsih, initiatorTaskTag: request.initiatorTaskTag, statusClass,
      statusDetail, data: Buffer.alloc(0),
    };
  }

  private draft(request: LoginRequestPdu, transit: boolean, data: Buffer): LoginResponseDraft {
    return {
      kind: "login-response", transit, continue: false, currentStage: request.currentStage,
      nextStage: transit ? request.nextStage : 0, versionMax: ISCSI_VERSION, versionActive: ISCSI_VERSION, isid: request.isid, tsih: 0,
      initiatorTaskTag: request.initiatorTaskTag, statusClass: 0, statusDetail: 0, data,
    };
  }

  private checkStages(request: LoginRequestPdu): void {
    const { currentStage, nextStage } = request;
    if (currentStage !== LOGIN_STAGE.SECURITY_NEGOTIATION && currentStage !== LOGIN_STAGE.OPERATIONAL_NEGOTIATION) {
      throw new LoginError("InitiatorError", `login in stage ${currentStage}`);
    }
    if (request.transit && (nextStage === 2 || nextStage <= currentStage)) {
      throw new LoginError("InitiatorError", `invalid stage transition ${currentStage} → ${nextStage}`);
    }
    if (request.transit && request.continue) throw new LoginError("InitiatorError", "Login Request with both T and C set");
  }

  private checkLeadingRequest(request: LoginRequestPdu): void {
    this.first = request;
    if (request.versionMin > ISCSI_VERSION) throw new LoginError("UnsupportedVersion", `initiator needs version ≥ ${request.versionMin}`);
    this.checkStages(request);
    if (request.tsih !== 0) {
      // MaxConnections is 1: a second connection for a session is refused (RFC 7143 §11.13.5 0x0206).
      throw this.host.sessionExists(request.tsih)
        ? new LoginError("TooManyConnections", `session ${request.tsih} already has its one connection`)
        : new LoginError("SessionDoesNotExist", `no session with TSIH ${request.tsih}`);
    }
  }

  private checkFollowingRequest(request: LoginRequestPdu): void {
    const first = this.first as LoginRequestPdu;
    this.checkStages(request);
    if (!request.isid.equals(first.isid) || request.tsih !== first.tsih || request.cid !== first.cid) {
      throw new LoginError("InitiatorError", "ISID, TSIH or CID changed during login");
    }
    const expected = this.stage ?? first.currentStage;
    if (request.currentStage !== expected && !this.text.pending) {
      throw new LoginError("InitiatorError", `Login Request in stage ${request.currentStage}, expected ${expected}`);
    }
  }

  /** The leading Login Request names the initiator, the session type and the target (RFC 7143 §6.3). */
  private identify(request: LoginRequestPdu, keys: Map<string, string>): void {
    this.stage = request.currentStage;
    const initiatorName = keys.get("InitiatorName");
    if (initiatorName === undefined || initiatorName.length === 0) throw new LoginError("MissingParameter", "InitiatorName missing");
    if (Buffer.byteLength(initiatorName) > ISCSI_NAME_BYTES_MAX) throw new LoginError("InitiatorError", "InitiatorName too long");
    this.initiatorName = initiatorName;
    this.initiatorAlias = keys.get("InitiatorAlias");
    const sessionType = keys.get("SessionType") ?? "Normal";
    if (sessionType !== "Normal" && sessionType !== "Discovery") throw new LoginError("SessionTypeNotSupported", `SessionType=${sessionType}`);
    this.sessionType = sessionType;
    for (const key of ["InitiatorName", "InitiatorAlias", "SessionType", "TargetName"]) {
      const value = keys.get(key);
      if (value !== undefined) this.identityValues.set(key, value);
      if (keys.delete(key)) this.negotiatedKeys.add(key);
    }
    if (sessionType === "Discovery") {
      this.chapSettings = this.host.settings.discoveryChap;
    } else {
      const targetName = this.identityValues.get("TargetName");
      if (targetName === undefined || targetName.length === 0) throw new LoginError("MissingParameter", "TargetName missing in a Normal session");
      const target = this.host.registry.findTarget(targetName);
      if (target === undefined) throw new LoginError("TargetNotFound", `no target ${targetName}`);
      if (target.allowedInitiators !== undefined && !target.allowedInitiators.includes(initiatorName)) {
        throw new LoginError("AuthorizationFailed", `initiator ${initiatorName} is not in the ACL of ${targetName}`);
      }
      this.target = target;
      this.chapSettings = target.chap;
    }
    if (this.chapSettings === undefined) this.authenticated = true;
    else if (request.currentStage !== LOGIN_STAGE.SECURITY_NEGOTIATION) {
      throw new LoginError("AuthenticationFailed", "the target requires CHAP but the initiator skipped security negotiation");
    }
  }

  /** Declarations the target makes once, in its first response: TargetPortalGroupTag and TargetAlias (RFC 7143 §13.9). */
  private declare(answers: TextPair[]): void {
    if (this.declaredPortalGroup) return;
    this.declaredPortalGroup = true;
    if (this.sessionType !== "Normal") return;
    answers.push({ key: "TargetPortalGroupTag", value: String(this.host.settings.targetPortalGroupTag) });
    if (this.target?.alias !== undefined) answers.push({ key: "TargetAlias", value: this.target.alias });
  }

  private declareOperational(answers: TextPair[]): void {
    this.declaredMaxRecvDataSegmentLength = true;
    const ours = this.host.settings.maxRecvDataSegmentLengthBytes;
    this.parameters.targetMaxRecvDataSegmentLengthBytes = ours;
    answers.push({ key: "MaxRecvDataSegmentLength", value: String(ours) });
  }

  private security(keys: Map<string, string>, answers: TextPair[]): void {
    const methods = keys.get("AuthMethod");
    if (methods !== undefined) {
      this.negotiatedKeys.add("AuthMethod");
      const offered = splitList(methods);
      if (this.chapSettings !== undefined) {
        if (!offered.includes("CHAP")) {
          throw new LoginError("AuthenticationFailed", `the target requires CHAP; the initiator offers ${methods}`);
        }
        answers.push({ key: "AuthMethod", value: "CHAP" });
        this.chap = new ChapAuthenticator(this.chapSettings, this.randomBytes);
      } else if (offered.includes("None")) {
        answers.push({ key: "AuthMethod", value: "None" });
      } else {
        throw new LoginError("AuthenticationFailed", `AuthMethod=${methods}: the target offers only None`);
      }
    }
    const chapKeys = new Map([...keys].filter(([key]) => key.startsWith("CHAP_")));
    if (this.chap === undefined) {
      if (chapKeys.size > 0) throw new LoginError("AuthenticationFailed", "CHAP keys without AuthMethod=CHAP");
      return;
    }
    answers.push(...this.chap.step(chapKeys));
    for (const key of chapKeys.keys()) this.negotiatedKeys.add(key);
    if (this.chap.done) this.authenticated = true;
  }

  /** Whether the target agrees to leave `stage` (RFC 7143 §6.3: it may keep T at 0). */
  private mayLeave(stage: number): boolean {
    if (stage === LOGIN_STAGE.SECURITY_NEGOTIATION) return this.authenticated;
    return true;
  }

  /** The answer to one operational or declarative key (RFC 7143 §13), updating the parameters. */
  private negotiate(key: string, value: string): Answer {
    const settings = this.host.settings;
    const parameters = this.parameters;
    const discovery = this.sessionType === "Discovery";
    switch (key) {
      case "TargetName":
      case "InitiatorName":
      case "SessionType":
        throw new LoginError("InitiatorError", `${key} may only be sent in the leading Login Request`);
      case "HeaderDigest":
      case "DataDigest": {
        const offered = splitList(value);
        const chosen = offered.find((digest) => digest === "CRC32C" || digest === "None");
        if (chosen === undefined) return "Reject";
        if (key === "HeaderDigest") parameters.headerDigest = chosen === "CRC32C";
        else parameters.dataDigest = chosen === "CRC32C";
        return chosen;
      }
      case "MaxConnections":
        lengthValue(key, value, 1, 65535);
        return "1";
      case "InitialR2T":
        parameters.initialR2T = yesNo(value, key) || settings.initialR2T;
        return discovery ? "Irrelevant" : parameters.initialR2T ? "Yes" : "No";
      case "ImmediateData":
        parameters.immediateData = yesNo(value, key) && settings.immediateData;
        return discovery ? "Irrelevant" : parameters.immediateData ? "Yes" : "No";
      case "MaxRecvDataSegmentLength":
        // Declarative: the initiator's receive limit bounds the Data-In and text we send.
        parameters.initiatorMaxRecvDataSegmentLengthBytes = lengthValue(key, value);
        return undefined;
      case "MaxBurstLength":
        parameters.maxBurstLengthBytes = Math.min(lengthValue(key, value), settings.maxBurstLengthBytes);
        parameters.firstBurstLengthBytes = Math.min(parameters.firstBurstLengthBytes, parameters.maxBurstLengthBytes);
        return discovery ? "Irrelevant" : String(parameters.maxBurstLengthBytes);
      case "FirstBurstLength":
        parameters.firstBurstLengthBytes = Math.min(lengthValue(key, value), settings.firstBurstLengthBytes, parameters.maxBurstLengthBytes);
        return discovery ? "Irrelevant" : String(parameters.firstBurstLengthBytes);
      case "MaxOutstandingR2T":
        parameters.maxOutstandingR2T = Math.min(lengthValue(key, value, 1, 65535), settings.maxOutstandingR2T);
        return discovery ? "Irrelevant" : String(parameters.maxOutstandingR2T);
      case "DataPDUInOrder":
      case "DataSequenceInOrder":
        // OR function; we want Yes, which makes the result Yes whatever was offered.
        yesNo(value, key);
        return discovery ? "Irrelevant" : "Yes";
      case "DefaultTime2Wait":
        parameters.defaultTime2WaitSeconds = Math.max(lengthValue(key, value, 0, 3600), DEFAULT_TIME_2_WAIT_SECONDS);
        return String(parameters.defaultTime2WaitSeconds);
      case "DefaultTime2Retain":
        parameters.defaultTime2RetainSeconds = Math.min(lengthValue(key, value, 0, 3600), DEFAULT_TIME_2_RETAIN_SECONDS);
        return String(parameters.defaultTime2RetainSeconds);
      case "ErrorRecoveryLevel":
        lengthValue(key, value, 0, 2);
        return "0";
      case "IFMarker":
      case "OFMarker":
        // RFC 7143 removed markers; RFC 3720 initiators may still offer them (AND function → No).
        yesNo(value, key);
        return "No";
      case "IFMarkInt":
      case "OFMarkInt":
        return "Irrelevant";
      case "iSCSIProtocolLevel":
        return String(Math.min(lengthValue(key, value, 0, 31), ISCSI_PROTOCOL_LEVEL));
      case "TaskReporting":
        return "RFC3720";
      default:
        if (DECLARATIVE_IGNORED_KEYS.has(key)) return undefined;
        // RFC 7143 §6.2: unknown keys (X- private ones included) are answered NotUnderstood.
        return "NotUnderstood";
    }
  }
}
