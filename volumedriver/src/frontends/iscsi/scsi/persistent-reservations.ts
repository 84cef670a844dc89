// Persistent reservations (SPC-5 §5.13; PERSISTENT RESERVE IN §6.16, OUT §6.17) of one logical
// unit: registrations per I_T nexus (or per initiator port with ALL_TG_PT), at most one reservation
// of the six types, PRgeneration, the conflict table for non-holders (SPC-5 §5.13.1 Table 62 and
// SBC-4 §4.17 Table 13), unit attentions on preempt/release/clear, and APTPL state persisted to a
// JSON file (written to a temp file, fsynced, renamed). SPEC_I_PT is not supported (SIP_C = 0).
import { open, readFile, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { crc32c } from "../../../../../alba/src/codec/crc32c.ts";
import { invalidCdbField, invalidParameterField, ScsiError } from "./sense-table.ts";
import type { ScsiNexus } from "./scsi-types.ts";
import { nexusKeyOf, type UnitAttentions } from "./unit-attention.ts";

/** PERSISTENT RESERVE OUT service actions (SPC-5 §6.17.2, Table 190). */
export const PR_OUT = {
  REGISTER: 0x00,
  RESERVE: 0x01,
  RELEASE: 0x02,
  CLEAR: 0x03,
  PREEMPT: 0x04,
  PREEMPT_AND_ABORT: 0x05,
  REGISTER_AND_IGNORE_EXISTING_KEY: 0x06,
  REGISTER_AND_MOVE: 0x07,
} as const;

/** PERSISTENT RESERVE IN service actions (SPC-5 §6.16.1, Table 176). */
export const PR_IN = { READ_KEYS: 0x00, READ_RESERVATION: 0x01, REPORT_CAPABILITIES: 0x02, READ_FULL_STATUS: 0x03 } as const;

/** Reservation types (SPC-5 §6.16.3.4, Table 180). */
export const PR_TYPE = {
  WRITE_EXCLUSIVE: 0x1,
  EXCLUSIVE_ACCESS: 0x3,
  WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 0x5,
  EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 0x6,
  WRITE_EXCLUSIVE_ALL_REGISTRANTS: 0x7,
  EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 0x8,
} as const;

const VALID_TYPES: readonly number[] = Object.values(PR_TYPE);
const LU_SCOPE = 0x0;
/** The iSCSI protocol identifier in TransportIDs and VPD designators (SPC-5 §7.6.1, Table 537). */
export const PROTOCOL_ID_ISCSI = 0x5;
/** Registrations kept per logical unit: beyond this REGISTER fails with INSUFFICIENT REGISTRATION RESOURCES. */
export const REGISTRATIONS_MAX = 128;

/** How a command meets a reservation held by someone else (the conflict table's rows). */
export type ReservationAccess =
  /** INQUIRY, REPORT LUNS, REQUEST SENSE, READ CAPACITY, PR IN, ...: always allowed. */
  | "allowed"
  /** READ, VERIFY, MODE SENSE, GET LBA STATUS: allowed under Write Exclusive types. */
  | "read"
  /** WRITE, UNMAP, SYNCHRONIZE CACHE, MODE SELECT, ...: allowed only for holders (and registrants of RO/AR types). */
  | "write"
  /** PERSISTENT RESERVE OUT: the service action decides (SPC-5 §5.13.1). */
  | "persistent-reserve-out"
  /** RESERVE/RELEASE(6/10): conflict while a persistent reservation exists (SPC-5 §5.13.3, CRH = 1). */
  | "legacy-reservation";

function isAllRegistrants(type: number): boolean {
  return type === PR_TYPE.WRITE_EXCLUSIVE_ALL_REGISTRANTS || type === PR_TYPE.EXCLUSIVE_ACCESS_ALL_REGISTRANTS;
}

function isRegistrantsType(type: number): boolean {
  return type >= PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY;
}

function isWriteExclusive(type: number): boolean {
  return type === PR_TYPE.WRITE_EXCLUSIVE || type === PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
    || type === PR_TYPE.WRITE_EXCLUSIVE_ALL_REGISTRANTS;
}

export interface Registration {
  initiatorPort: string;
  initiatorName: string;
  targetPort: string;
  relativeTargetPortId: number;
  /** ALL_TG_PT: the registration holds on every target port of this initiator port. */
  allTargetPorts: boolean;
  /** From a REGISTER AND MOVE TransportID without ISID: matches any port of the initiator name. */
  nameOnly: boolean;
  key: bigint;
}

export interface Reservation {
  /** The holder; for the all-registrants types every registrant holds it and this is undefined. */
  holder: Registration | undefined;
  type: number;
}

/** The persisted form (APTPL), version 1, with a CRC-32C over the JSON of `state`. */
interface PersistedReservations {
  format: "ovs-scsi-persistent-reservations";
  version: 1;
  crc32c: number;
  state: {
    generation: number;
    registrations: Array<Omit<Registration, "key"> & { key: string }>;
    reservation: { holderIndex: number; type: number } | null;
  };
}

/** The PERSISTENT RESERVE OUT basic parameter list (SPC-5 §6.17.3, Table 192). */
interface BasicParameters {
  key: bigint;
  serviceActionKey: bigint;
  specifyInitiatorPorts: boolean;
  allTargetPorts: boolean;
  activatePersistThroughPowerLoss: boolean;
}

export class PersistentReservations {
  private registrations: Registration[] = [];
  private reservation: Reservation | undefined;
  /** PRgeneration (SPC-5 §6.16.2): 32 bits, wraps. */
  private generation = 0;
  /** APTPL of the last REGISTER that set it: state survives restarts while true. */
  private persistThroughPowerLoss = false;
  private saving: Promise<void> = Promise.resolve();

  constructor(private readonly unitAttentions: UnitAttentions, private readonly statePath: string | undefined) {}

  // ---- queries -----------------------------------------------------------------------------

  registrationOf(nexus: ScsiNexus): Registration | undefined {
    return this.registrations.find((registration) => PersistentReservations.matches(registration, nexus));
  }

  private static matches(registration: Registration, nexus: ScsiNexus): boolean {
    const sameInitiator = registration.nameOnly
      ? registration.initiatorName === nexus.initiatorName
      : registration.initiatorPort === nexus.initiatorPort;
    return sameInitiator && (registration.allTargetPorts || registration.targetPort === nexus.targetPort);
  }

  get currentReservation(): Reservation | undefined {
    return this.reservation;
  }

  get currentGeneration(): number {
    return this.generation;
  }

  get keys(): bigint[] {
    return this.registrations.map((registration) => registration.key);
  }

  isHolder(nexus: ScsiNexus): boolean {
    const reservation = this.reservation;
    if (reservation === undefined) return false;
    const registration = this.registrationOf(nexus);
    if (registration === undefined) return false;
    return isAllRegistrants(reservation.type) || reservation.holder === registration;
  }

  /**
   * The conflict table for a command from a nexus (SPC-5 §5.13.1 Table 62, SBC-4 §4.17 Table 13):
   * true when the command must end with RESERVATION CONFLICT.
   */
  conflicts(nexus: ScsiNexus, access: ReservationAccess): boolean {
    const reservation = this.reservation;
    if (reservation === undefined) return false;
    if (access === "allowed" || access === "persistent-reserve-out") return false;
    if (access === "legacy-reservation") return true;
    if (this.isHolder(nexus)) return false;
    if (isRegistrantsType(reservation.type) && this.registrationOf(nexus) !== undefined) return false;
    return !(access === "read" && isWriteExclusive(reservation.type));
  }

  // ---- unit attentions ---------------------------------------------------------------------

  /** The nexus keys a registration stands for (with ALL_TG_PT, every known nexus of the initiator port). */
  private nexusKeysOf(registration: Registration): string[] {
    return this.unitAttentions.knownNexuses().filter((key) => {
      const [initiatorPort, targetPort] = key.split("|");
      const sameInitiator = registration.nameOnly
        ? initiatorPort.startsWith(`${registration.initiatorName},`) || initiatorPort === registration.initiatorName
        : initiatorPort === registration.initiatorPort;
      return sameInitiator && (registration.allTargetPorts || targetPort === registration.targetPort);
    });
  }

  private notify(registrations: readonly Registration[], reason: "UaReservationsPreempted" | "UaReservationsReleased" | "UaRegistrationsPreempted", except: ScsiNexus): void {
    const exceptKey = nexusKeyOf(except);
    for (const registration of registrations) {
      for (const key of this.nexusKeysOf(registration)) if (key !== exceptKey) this.unitAttentions.establish(key, reason);
    }
  }

  // ---- PERSISTENT RESERVE IN (SPC-5 §6.16) --------------------------------------------------

  /** Runs PERSISTENT RESERVE IN; returns the parameter data (not yet cut to the allocation length). */
  handleIn(cdb: Buffer): Buffer {
    const serviceAction = cdb[1] & 0x1f;
    switch (serviceAction) {
      case PR_IN.READ_KEYS: return this.readKeys();
      case PR_IN.READ_RESERVATION: return this.readReservation();
      case PR_IN.REPORT_CAPABILITIES: return this.reportCapabilities();
      case PR_IN.READ_FULL_STATUS: return this.readFullStatus();
      default: throw invalidCdbField(1, 4);
    }
  }

  /** SPC-5 §6.16.2 READ KEYS: PRgeneration, ADDITIONAL LENGTH, one 8-byte key per registration. */
  private readKeys(): Buffer {
    const data = Buffer.alloc(8 + 8 * this.registrations.length);
    data.writeUInt32BE(this.generation, 0);
    data.writeUInt32BE(8 * this.registrations.length, 4);
    this.registrations.forEach((registration, index) => data.writeBigUInt64BE(registration.key, 8 + 8 * index));
    return data;
  }

  /** SPC-5 §6.16.3 READ RESERVATION: the key is 0 for the all-registrants types (§5.13.10). */
  private readReservation(): Buffer {
    const reservation = this.reservation;
    if (reservation === undefined) {
      const data = Buffer.alloc(8);
      data.writeUInt32BE(this.generation, 0);
      return data;
    }
    const data = Buffer.alloc(24);
    data.writeUInt32BE(this.generation, 0);
    data.writeUInt32BE(16, 4);
    data.writeBigUInt64BE(reservation.holder?.key ?? 0n, 8);
    data[21] = (LU_SCOPE << 4) | reservation.type;
    return data;
  }

  /** SPC-5 §6.16.4 REPORT CAPABILITIES (Table 182). */
  private reportCapabilities(): Buffer {
    const data = Buffer.alloc(8);
    data.writeUInt16BE(8, 0);
    // CRH = 1 (RESERVE/RELEASE conflict with persistent reservations), SIP_C = 0, ATP_C = 1,
    // PTPL_C = 1 when a state file is configured.
    data[2] = 0x10 | 0x04 | (this.statePath !== undefined ? 0x01 : 0x00);
    // TMV = 1, ALLOW COMMANDS = 001b, PTPL_A.
    data[3] = 0x80 | (0x1 << 4) | (this.persistThroughPowerLoss ? 0x01 : 0x00);
    // PERSISTENT RESERVATION TYPE MASK: WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX; EX_AC_AR.
    data[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;
    data[5] = 0x01;
    return data;
  }

  /** SPC-5 §6.16.5 READ FULL STATUS: one descriptor per registration with its TransportID. */
  private readFullStatus(): Buffer {
    const descriptors = this.registrations.map((registration) => {
      const transportId = PersistentReservations.transportIdOf(registration);
      const descriptor = Buffer.alloc(24 + transportId.length);
      descriptor.writeBigUInt64BE(registration.key, 0);
      const holder = this.reservation !== undefined
        && (isAllRegistrants(this.reservation.type) || this.reservation.holder === registration);
      descriptor[12] = (registration.allTargetPorts ? 0x02 : 0x00) | (holder ? 0x01 : 0x00);
      if (holder && this.reservation !== undefined) descriptor[13] = (LU_SCOPE << 4) | this.reservation.type;
      descriptor.writeUInt16BE(registration.allTargetPorts ? 0 : registration.relativeTargetPortId, 18);
      descriptor.writeUInt32BE(transportId.length, 20);
      transportId.copy(descriptor, 24);
      return descriptor;
    });
    const body = Buffer.concat(descriptors);
    const header = Buffer.alloc(8);
    header.writeUInt32BE(this.generation, 0);
    header.writeUInt32BE(body.length, 4);
    return Buffer.concat([header, body]);
  }

  /** An iSCSI TransportID (SPC-5 §7.6.4.6): format 01b with ",i,0x<ISID>" when we know the port. */
  private static transportIdOf(registration: Registration): Buffer {
    const withIsid = !registration.nameOnly && registration.initiatorPort.includes(",i,0x");
    const name = Buffer.from(withIsid ? registration.initiatorPort : registration.initiatorName, "utf8");
    // The name is null-terminated and padded to a multiple of 4 bytes, at least 20 (§7.6.4.6).
    const nameLength = Math.max(20, Math.ceil((name.length + 1) / 4) * 4);
    const transportId = Buffer.alloc(4 + nameLength);
    transportId[0] = (withIsid ? 0x40 : 0x00) | PROTOCOL_ID_ISCSI;
    transportId.writeUInt16BE(nameLength, 2);
    name.copy(transportId, 4);
    return transportId;
  }

  // ---- PERSISTENT RESERVE OUT (SPC-5 §6.17) -------------------------------------------------

  /**
   * Runs PERSISTENT RESERVE OUT. Throws ScsiError for CHECK CONDITION, returns "conflict" for
   * RESERVATION CONFLICT, "good" otherwise (after the APTPL state is durable).
   */
  async handleOut(nexus: ScsiNexus, cdb: Buffer, dataOut: Buffer | undefined): Promise<"good" | "conflict"> {
    const serviceAction = cdb[1] & 0x1f;
    const scope = cdb[2] >> 4;
    const type = cdb[2] & 0x0f;
    const listLength = cdb.readUInt32BE(5);
    if (serviceAction > PR_OUT.REGISTER_AND_MOVE) throw invalidCdbField(1, 4);
    const data = (dataOut ?? Buffer.alloc(0)).subarray(0, listLength);
    if (serviceAction === PR_OUT.REGISTER_AND_MOVE) return this.finish(this.registerAndMove(nexus, cdb, data, listLength));
    // §6.17.3: the basic parameter list is 24 bytes; other lengths are only valid with SPEC_I_PT.
    if (listLength !== 24 || data.length < 24) {
      if (data.length >= 24 && (data[20] & 0x08) !== 0) throw invalidParameterField(20, 3);
      throw new ScsiError("ParameterListLengthError");
    }
    const parameters: BasicParameters = {
      key: data.readBigUInt64BE(0),
      serviceActionKey: data.readBigUInt64BE(8),
      specifyInitiatorPorts: (data[20] & 0x08) !== 0,
      allTargetPorts: (data[20] & 0x04) !== 0,
      activatePersistThroughPowerLoss: (data[20] & 0x01) !== 0,
    };
    if (parameters.specifyInitiatorPorts) throw invalidParameterField(20, 3); // SIP_C = 0
    switch (serviceAction) {
      case PR_OUT.REGISTER:
      case PR_OUT.REGISTER_AND_IGNORE_EXISTING_KEY:
        return this.finish(this.register(nexus, parameters, serviceAction === PR_OUT.REGISTER_AND_IGNORE_EXISTING_KEY));
      case PR_OUT.RESERVE:
        return this.finish(this.reserve(nexus, parameters, scope, type));
      case PR_OUT.RELEASE:
        return this.finish(this.release(nexus, parameters, scope, type));
      case PR_OUT.CLEAR:
        return this.finish(this.clear(nexus, parameters));
      case PR_OUT.PREEMPT:
      case PR_OUT.PREEMPT_AND_ABORT:
        return this.finish(this.preempt(nexus, parameters, scope, type));
      default:
        throw invalidCdbField(1, 4);
    }
  }

  /** Persists the new state (when APTPL is in effect) before the command reports GOOD. */
  private async finish(outcome: "good" | "conflict" | "changed"): Promise<"good" | "conflict"> {
    if (outcome === "changed") {
      this.saving = this.saving.then(() => this.save());
      await this.saving;
      return "good";
    }
    return outcome;
  }

  private bumpGeneration(): void {
    this.generation = (this.generation + 1) >>> 0;
  }

  private checkScopeAndType(scope: number, type: number): void {
    if (scope !== LU_SCOPE) throw invalidCdbField(2, 7);
    if (!VALID_TYPES.includes(type)) throw invalidCdbField(2, 3);
  }

  private setPersistThroughPowerLoss(requested: boolean): void {
    // §6.17.3: APTPL = 1 when PTPL_C = 0 is an INVALID FIELD IN PARAMETER LIST.
    if (requested && this.statePath === undefined) throw invalidParameterField(20, 0);
    this.persistThroughPowerLoss = requested;
  }

  /** SPC-5 §5.13.7 registering, §5.13.11.2.3 unregistering. */
  private register(nexus: ScsiNexus, parameters: BasicParameters, ignoreExistingKey: boolean): "good" | "conflict" | "changed" {
    const existing = this.registrationOf(nexus);
    if (existing === undefined) {
      if (!ignoreExistingKey && parameters.key !== 0n) return "conflict";
      if (parameters.serviceActionKey === 0n) return "good"; // nothing to register or remove
      if (this.registrations.length >= REGISTRATIONS_MAX) throw new ScsiError("InsufficientRegistrationResources");
      this.setPersistThroughPowerLoss(parameters.activatePersistThroughPowerLoss);
      this.registrations.push({
        initiatorPort: nexus.initiatorPort,
        initiatorName: nexus.initiatorName,
        targetPort: nexus.targetPort,
        relativeTargetPortId: nexus.relativeTargetPortId,
        allTargetPorts: parameters.allTargetPorts,
        nameOnly: false,
        key: parameters.serviceActionKey,
      });
      this.bumpGeneration();
      return "changed";
    }
    if (!ignoreExistingKey && parameters.key !== existing.key) return "conflict";
    this.setPersistThroughPowerLoss(parameters.activatePersistThroughPowerLoss);
    if (parameters.serviceActionKey !== 0n) {
      existing.key = parameters.serviceActionKey;
    } else {
      this.unregister(existing, nexus);
    }
    this.bumpGeneration();
    return "changed";
  }

  private unregister(registration: Registration, nexus: ScsiNexus): void {
    this.registrations = this.registrations.filter((other) => other !== registration);
    const reservation = this.reservation;
    if (reservation === undefined) return;
    if (isAllRegistrants(reservation.type)) {
      if (this.registrations.length === 0) this.reservation = undefined;
      return;
    }
    if (reservation.holder !== registration) return;
    this.reservation = undefined;
    // §5.13.11.2.3: releasing a registrants-only reservation by unregistering tells the others.
    if (isRegistrantsType(reservation.type)) this.notify(this.registrations, "UaReservationsReleased", nexus);
  }

  /** SPC-5 §5.13.9 reserving. */
  private reserve(nexus: ScsiNexus, parameters: BasicParameters, scope: number, type: number): "good" | "conflict" | "changed" {
    const registration = this.registrationOf(nexus);
    if (registration === undefined || registration.key !== parameters.key) return "conflict";
    this.checkScopeAndType(scope, type);
    const reservation = this.reservation;
    if (reservation !== undefined) {
      // §5.13.9: the holder may repeat its own reservation; anything else conflicts.
      return this.isHolder(nexus) && reservation.type === type ? "good" : "conflict";
    }
    this.reservation = { holder: isAllRegistrants(type) ? undefined : registration, type };
    return "changed"; // saved with APTPL, but RESERVE does not bump PRgeneration (§6.16.2)
  }

  /** SPC-5 §5.13.11.2.2 releasing. */
  private release(nexus: ScsiNexus, parameters: BasicParameters, scope: number, type: number): "good" | "conflict" | "changed" {
    const registration = this.registrationOf(nexus);
    if (registration === undefined || registration.key !== parameters.key) return "conflict";
    const reservation = this.reservation;
    if (reservation === undefined || !this.isHolder(nexus)) return "good";
    if (scope !== LU_SCOPE || type !== reservation.type) throw new ScsiError("InvalidReleaseOfPersistentReservation");
    this.reservation = undefined;
    if (isRegistrantsType(reservation.type)) this.notify(this.registrations, "UaReservationsReleased", nexus);
    return "changed";
  }

  /** SPC-5 §5.13.11.2.6 clearing: every registration and the reservation go. */
  private clear(nexus: ScsiNexus, parameters: BasicParameters): "conflict" | "changed" {
    const registration = this.registrationOf(nexus);
    if (registration === undefined || registration.key !== parameters.key) return "conflict";
    this.notify(this.registrations, "UaReservationsPreempted", nexus);
    this.registrations = [];
    this.reservation = undefined;
    this.bumpGeneration();
    return "changed";
  }

  /** SPC-5 §5.13.11.4 preempting (PREEMPT AND ABORT: the transport aborts the preempted tasks). */
  private preempt(nexus: ScsiNexus, parameters: BasicParameters, scope: number, type: number): "conflict" | "changed" {
    const registration = this.registrationOf(nexus);
    if (registration === undefined || registration.key !== parameters.key) return "conflict";
    const victimKey = parameters.serviceActionKey;
    const removeVictims = (victims: Registration[]): void => {
      this.registrations = this.registrations.filter((other) => !victims.includes(other));
      this.notify(victims, "UaRegistrationsPreempted", nexus);
    };
    const reservation = this.reservation;
    if (reservation === undefined || (isAllRegistrants(reservation.type) && victimKey !== 0n)) {
      // §5.13.11.4.2 / .4.4: no reservation (or all-registrants with a key): remove registrations only.
      if (victimKey === 0n) throw invalidParameterField(8);
      const victims = this.registrations.filter((other) => other.key === victimKey && other !== registration);
      if (victims.length === 0) return "conflict";
      removeVictims(victims);
      this.bumpGeneration();
      return "changed";
    }
    if (isAllRegistrants(reservation.type)) {
      // §5.13.11.4.4 with key 0: every other registration goes; we take a new reservation.
      this.checkScopeAndType(scope, type);
      removeVictims(this.registrations.filter((other) => other !== registration));
      this.reservation = { holder: isAllRegistrants(type) ? undefined : registration, type };
      this.bumpGeneration();
      return "changed";
    }
    const holderKey = reservation.holder?.key;
    if (victimKey !== holderKey) {
      // §5.13.11.4.3 b): preempting registrations that do not hold the reservation.
      if (victimKey === 0n) throw invalidParameterField(8);
      const victims = this.registrations.filter((other) => other.key === victimKey && other !== registration);
      if (victims.length === 0) return "conflict";
      removeVictims(victims);
      this.bumpGeneration();
      return "changed";
    }
    // §5.13.11.4.3 a): preempting the holder: its registrations go and we hold the reservation.
    this.checkScopeAndType(scope, type);
    removeVictims(this.registrations.filter((other) => other.key === victimKey && other !== registration));
    this.reservation = { holder: isAllRegistrants(type) ? undefined : registration, type };
    if (reservation.type !== type) {
      this.notify(this.registrations.filter((other) => other !== registration), "UaReservationsReleased", nexus);
    }
    this.bumpGeneration();
    return "changed";
  }

  /** SPC-5 §5.13.8 REGISTER AND MOVE (parameter list §6.17.4, Table 194). */
  private registerAndMove(nexus: ScsiNexus, cdb: Buffer, data: Buffer, listLength: number): "conflict" | "changed" {
    if (listLength < 24 || data.length < 24) throw new ScsiError("ParameterListLengthError");
    const transportIdLength = data.readUInt32BE(20);
    if (24 + transportIdLength > data.length) throw new ScsiError("ParameterListLengthError");
    const key = data.readBigUInt64BE(0);
    const serviceActionKey = data.readBigUInt64BE(8);
    const unregisterSource = (data[17] & 0x02) !== 0;
    const aptpl = (data[17] & 0x01) !== 0;
    const relativeTargetPortId = data.readUInt16BE(18);
    const registration = this.registrationOf(nexus);
    if (registration === undefined || registration.key !== key) return "conflict";
    const reservation = this.reservation;
    if (reservation === undefined || isAllRegistrants(reservation.type) || reservation.holder !== registration) return "conflict";
    const scope = cdb[2] >> 4;
    if (scope !== LU_SCOPE) throw invalidCdbField(2, 7);
    if (serviceActionKey === 0n) throw invalidParameterField(8);
    if (relativeTargetPortId !== nexus.relativeTargetPortId) throw invalidParameterField(18);
    const destination = PersistentReservations.parseTransportId(data.subarray(24, 24 + transportIdLength));
    const destinationNexus: ScsiNexus = {
      initiatorName: destination.initiatorName,
      initiatorPort: destination.initiatorPort ?? destination.initiatorName,
      targetPort: nexus.targetPort,
      relativeTargetPortId,
    };
    if (PersistentReservations.matches(registration, destinationNexus) && destination.initiatorPort !== undefined) {
      throw invalidParameterField(24); // moving to ourselves
    }
    this.setPersistThroughPowerLoss(aptpl);
    let target = this.registrationOf(destinationNexus);
    if (target === undefined) {
      if (this.registrations.length >= REGISTRATIONS_MAX) throw new ScsiError("InsufficientRegistrationResources");
      target = {
        initiatorPort: destinationNexus.initiatorPort,
        initiatorName: destination.initiatorName,
        targetPort: nexus.targetPort,
        relativeTargetPortId,
        allTargetPorts: false,
        nameOnly: destination.initiatorPort === undefined,
        key: serviceActionKey,
      };
      this.registrations.push(target);
    } else {
      target.key = serviceActionKey;
    }
    this.reservation = { holder: target, type: reservation.type };
    if (unregisterSource) this.registrations = this.registrations.filter((other) => other !== registration);
    this.bumpGeneration();
    return "changed";
  }

  /** Parses an iSCSI TransportID (SPC-5 §7.6.4.6): format 00b (name) or 01b (name,i,0xISID). */
  private static parseTransportId(transportId: Buffer): { initiatorName: string; initiatorPort: string | undefined } {
    if (transportId.length < 4) throw new ScsiError("ParameterListLengthError");
    if ((transportId[0] & 0x0f) !== PROTOCOL_ID_ISCSI) throw invalidParameterField(24, 0);
    const format = transportId[0] >> 6;
    if (format > 1) throw invalidParameterField(24, 7);
    const length = transportId.readUInt16BE(2);
    if (4 + length > transportId.length) throw new ScsiError("ParameterListLengthError");
    const text = transportId.subarray(4, 4 + length).toString("utf8").replace(/\0.*$/s, "");
    if (text.length === 0) throw invalidParameterField(28);
    if (format === 0) return { initiatorName: text, initiatorPort: undefined };
    const separator = text.toLowerCase().indexOf(",i,0x");
    if (separator <= 0) throw invalidParameterField(28);
    const initiatorName = text.slice(0, separator);
    return { initiatorName, initiatorPort: `${initiatorName},i,0x${text.slice(separator + 5).toLowerCase()}` };
  }

  // ---- persistence (APTPL) -----------------------------------------------------------------

  private serialize(): PersistedReservations["state"] {
    const holder = this.reservation?.holder;
    return {
      generation: this.generation,
      registrations: this.registrations.map((registration) => ({ ...registration, key: registration.key.toString(16) })),
      reservation: this.reservation === undefined ? null : {
        holderIndex: holder === undefined ? -1 : this.registrations.indexOf(holder),
        type: this.reservation.type,
      },
    };
  }

  /** Writes the state (APTPL = 1) or removes the file (APTPL = 0): temp file, fsync, rename. */
  private async save(): Promise<void> {
    if (this.statePath === undefined) return;
    if (!this.persistThroughPowerLoss) {
      await unlink(this.statePath).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== "ENOENT") throw error;
      });
      return;
    }
    const state = this.serialize();
    const stateJson = JSON.stringify(state);
    const persisted: PersistedReservations = {
      format: "ovs-scsi-persistent-reservations",
      version: 1,
      crc32c: crc32c(Buffer.from(stateJson, "utf8")),
      state,
    };
    const temporaryPath = `${this.statePath}.tmp`;
    const file = await open(temporaryPath, "w");
    try {
      await file.writeFile(`${JSON.stringify(persisted, null, 1)}\n`);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temporaryPath, this.statePath);
    const directory = await open(dirname(this.statePath), "r");
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  }

  /** Restores APTPL state if the file exists; a corrupt file is an error the operator must see. */
  async load(): Promise<void> {
    if (this.statePath === undefined) return;
    let text: string;
    try {
      text = await readFile(this.statePath, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      throw error;
    }
    const persisted = JSON.parse(text) as PersistedReservations;
    if (persisted.format !== "ovs-scsi-persistent-reservations" || persisted.version !== 1) {
      throw new Error(`${this.statePath}: not a version 1 persistent reservation file`);
    }
    if (crc32c(Buffer.from(JSON.stringify(persisted.state), "utf8")) !== persisted.crc32c) {
      throw new Error(`${this.statePath}: checksum mismatch`);
    }
    const state = persisted.state;
    this.generation = state.generation >>> 0;
    this.registrations = state.registrations.map((registration) => ({ ...registration, key: BigInt(`0x${registration.key}`) }));
    this.reservation = state.reservation === null ? undefined : {
      holder: state.reservation.holderIndex < 0 ? undefined : this.registrations[state.reservation.holderIndex],
      type: state.reservation.type,
    };
    this.persistThroughPowerLoss = true;
  }
}
