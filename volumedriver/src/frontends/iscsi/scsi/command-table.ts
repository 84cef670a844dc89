// The commands we serve, one row each (like the Linux target's opcode tables): opcode and service
// action, the CDB USAGE DATA REPORT SUPPORTED OPERATION CODES returns (SPC-5 §6.35.3), the row of
// the persistent reservation conflict table (SPC-5 §5.13.1, SBC-4 §4.17), whether a RESERVE(6)
// held by another nexus lets it through (SPC-2 §5.5.1), and the handler.
import { MAINTENANCE_IN, OPCODE, SERVICE_ACTION_IN_16 } from "./cdb.ts";
import type { CommandContext, CommandHandler } from "./logical-unit.ts";
import { PR_IN, PR_OUT, type ReservationAccess } from "./persistent-reservations.ts";
import {
  compareAndWrite, getLbaStatus, preFetch, read, readCapacity10, readCapacity16, synchronizeCache, unmap, verify, write,
  writeAndVerify, writeSame,
} from "./sbc.ts";
import { invalidCdbField, ReservationConflictError } from "./sense-table.ts";
import {
  inquiry, modeSelect10, modeSelect6, modeSense10, modeSense6, release, reportLuns, reportSupportedOperationCodes,
  reportSupportedTaskManagementFunctions, requestSense, reserve, testUnitReady,
} from "./spc.ts";

export interface CommandDescriptor {
  opcode: number;
  /** Set for opcodes whose CDB carries a SERVICE ACTION (SERVACTV = 1). */
  serviceAction?: number;
  name: string;
  /** CDB USAGE DATA: byte 0 the opcode, then a mask of the bits we evaluate in each CDB byte. */
  usage: readonly number[];
  access: ReservationAccess;
  allowedUnderLegacyReservation: boolean;
  handler: CommandHandler;
}

const FF4 = [0xff, 0xff, 0xff, 0xff];
const FF8 = [...FF4, ...FF4];

function row(
  opcode: number, name: string, usage: readonly number[], access: ReservationAccess, handler: CommandHandler,
  options: { serviceAction?: number; allowedUnderLegacyReservation?: boolean } = {},
): CommandDescriptor {
  return {
    opcode, name, usage: [opcode, ...usage], access, handler,
    serviceAction: options.serviceAction,
    allowedUnderLegacyReservation: options.allowedUnderLegacyReservation ?? false,
  };
}

async function persistentReserveIn(context: CommandContext): Promise<Buffer> {
  const data = context.lu.reservations.handleIn(context.command.cdb);
  const allocation = context.command.cdb.readUInt16BE(7);
  return data.length <= allocation ? data : data.subarray(0, allocation);
}

async function persistentReserveOut(context: CommandContext): Promise<undefined> {
  const { command, lu } = context;
  // A RESERVE(6) holder other than us blocks PR OUT like any other command (checked by the
  // dispatcher); the service action decides the rest.
  const outcome = await lu.reservations.handleOut(command.nexus, command.cdb, command.dataOut);
  if (outcome === "conflict") throw new ReservationConflictError();
  return undefined;
}

async function reserveUnit(context: CommandContext): Promise<undefined> {
  if (reserve(context) === "conflict") throw new ReservationConflictError();
  return undefined;
}

async function releaseUnit(context: CommandContext): Promise<undefined> {
  release(context);
  return undefined;
}

const PR_IN_USAGE = [0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0];
const PR_OUT_USAGE = [0x1f, 0xff, 0, 0, ...FF4, 0];
const RW10_USAGE = [0xf8, ...FF4, 0x1f, 0xff, 0xff, 0];
const RW12_USAGE = [0xf8, ...FF4, ...FF4, 0x1f, 0];
const RW16_USAGE = [0xf8, ...FF8, ...FF4, 0x1f, 0];

export const COMMANDS: readonly CommandDescriptor[] = [
  row(OPCODE.TEST_UNIT_READY, "TEST UNIT READY", [0, 0, 0, 0, 0], "allowed", testUnitReady),
  row(OPCODE.REQUEST_SENSE, "REQUEST SENSE", [0x01, 0, 0, 0xff, 0], "allowed", requestSense, { allowedUnderLegacyReservation: true }),
  row(OPCODE.READ_6, "READ(6)", [0x1f, 0xff, 0xff, 0xff, 0], "read", read),
  row(OPCODE.WRITE_6, "WRITE(6)", [0x1f, 0xff, 0xff, 0xff, 0], "write", write),
  row(OPCODE.INQUIRY, "INQUIRY", [0x01, 0xff, 0xff, 0xff, 0], "allowed", inquiry, { allowedUnderLegacyReservation: true }),
  row(OPCODE.MODE_SELECT_6, "MODE SELECT(6)", [0x11, 0, 0, 0xff, 0], "write", modeSelect6),
  row(OPCODE.RESERVE_6, "RESERVE(6)", [0, 0, 0, 0, 0], "legacy-reservation", reserveUnit),
  row(OPCODE.RELEASE_6, "RELEASE(6)", [0, 0, 0, 0, 0], "legacy-reservation", releaseUnit, { allowedUnderLegacyReservation: true }),
  row(OPCODE.MODE_SENSE_6, "MODE SENSE(6)", [0x08, 0xff, 0xff, 0xff, 0], "read", modeSense6),
  row(OPCODE.READ_CAPACITY_10, "READ CAPACITY(10)", [0, ...FF4, 0, 0, 0x01, 0], "allowed", readCapacity10),
  row(OPCODE.READ_10, "READ(10)", RW10_USAGE, "read", read),
  row(OPCODE.WRITE_10, "WRITE(10)", RW10_USAGE, "write", write),
  row(OPCODE.WRITE_AND_VERIFY_10, "WRITE AND VERIFY(10)", [0xf2, ...FF4, 0x1f, 0xff, 0xff, 0], "write", writeAndVerify),
  row(OPCODE.VERIFY_10, "VERIFY(10)", [0xf6, ...FF4, 0x1f, 0xff, 0xff, 0], "read", verify),
  row(OPCODE.PRE_FETCH_10, "PRE-FETCH(10)", [0x02, ...FF4, 0x3f, 0xff, 0xff, 0], "read", preFetch),
  row(OPCODE.SYNCHRONIZE_CACHE_10, "SYNCHRONIZE CACHE(10)", [0x02, ...FF4, 0x1f, 0xff, 0xff, 0], "write", synchronizeCache),
  row(OPCODE.WRITE_SAME_10, "WRITE SAME(10)", [0xf8, ...FF4, 0x1f, 0xff, 0xff, 0], "write", writeSame),
  row(OPCODE.UNMAP, "UNMAP", [0x01, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0], "write", unmap),
  row(OPCODE.MODE_SELECT_10, "MODE SELECT(10)", [0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0], "write", modeSelect10),
  row(OPCODE.RESERVE_10, "RESERVE(10)", [0x12, 0, 0, 0, 0, 0, 0, 0, 0], "legacy-reservation", reserveUnit),
  row(OPCODE.RELEASE_10, "RELEASE(10)", [0x12, 0, 0, 0, 0, 0, 0, 0, 0], "legacy-reservation", releaseUnit, { allowedUnderLegacyReservation: true }),
  row(OPCODE.MODE_SENSE_10, "MODE SENSE(10)", [0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0], "read", modeSense10),
  ...Object.entries(PR_IN).map(([name, serviceAction]) =>
    row(OPCODE.PERSISTENT_RESERVE_IN, `PERSISTENT RESERVE IN ${name}`, PR_IN_USAGE, "allowed", persistentReserveIn, { serviceAction })),
  ...Object.entries(PR_OUT).map(([name, serviceAction]) =>
    row(OPCODE.PERSISTENT_RESERVE_OUT, `PERSISTENT RESERVE OUT ${name}`, PR_OUT_USAGE, "persistent-reserve-out", persistentReserveOut, { serviceAction })),
  row(OPCODE.READ_16, "READ(16)", RW16_USAGE, "read", read),
  row(OPCODE.COMPARE_AND_WRITE, "COMPARE AND WRITE", [0xf8, ...FF8, 0, 0, 0, 0xff, 0x1f, 0], "write", compareAndWrite),
  row(OPCODE.WRITE_16, "WRITE(16)", RW16_USAGE, "write", write),
  row(OPCODE.WRITE_AND_VERIFY_16, "WRITE AND VERIFY(16)", [0xf2, ...FF8, ...FF4, 0x1f, 0], "write", writeAndVerify),
  row(OPCODE.VERIFY_16, "VERIFY(16)", [0xf6, ...FF8, ...FF4, 0x1f, 0], "read", verify),
  row(OPCODE.PRE_FETCH_16, "PRE-FETCH(16)", [0x02, ...FF8, ...FF4, 0x3f, 0], "read", preFetch),
  row(OPCODE.SYNCHRONIZE_CACHE_16, "SYNCHRONIZE CACHE(16)", [0x02, ...FF8, ...FF4, 0x1f, 0], "write", synchronizeCache),
  row(OPCODE.WRITE_SAME_16, "WRITE SAME(16)", [0xf9, ...FF8, ...FF4, 0x1f, 0], "write", writeSame),
  row(OPCODE.SERVICE_ACTION_IN_16, "READ CAPACITY(16)", [0x1f, 0, 0, 0, 0, 0, 0, 0, 0, ...FF4, 0, 0], "allowed", readCapacity16,
    { serviceAction: SERVICE_ACTION_IN_16.READ_CAPACITY_16 }),
  row(OPCODE.SERVICE_ACTION_IN_16, "GET LBA STATUS", [0x1f, ...FF8, ...FF4, 0, 0], "read", getLbaStatus,
    { serviceAction: SERVICE_ACTION_IN_16.GET_LBA_STATUS }),
  row(OPCODE.REPORT_LUNS, "REPORT LUNS", [0, 0xff, 0, 0, 0, ...FF4, 0, 0], "allowed", reportLuns, { allowedUnderLegacyReservation: true }),
  row(OPCODE.MAINTENANCE_IN, "REPORT SUPPORTED OPERATION CODES", [0x1f, 0x87, 0xff, 0xff, 0xff, ...FF4, 0, 0], "allowed",
    async (context) => reportSupportedOperationCodes(context, COMMANDS),
    { serviceAction: MAINTENANCE_IN.REPORT_SUPPORTED_OPERATION_CODES, allowedUnderLegacyReservation: true }),
  row(OPCODE.MAINTENANCE_IN, "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS", [0x1f, 0x80, 0, 0, 0, ...FF4, 0, 0], "allowed",
    reportSupportedTaskManagementFunctions,
    { serviceAction: MAINTENANCE_IN.REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS, allowedUnderLegacyReservation: true }),
  row(OPCODE.READ_12, "READ(12)", RW12_USAGE, "read", read),
  row(OPCODE.WRITE_12, "WRITE(12)", RW12_USAGE, "write", write),
  row(OPCODE.WRITE_AND_VERIFY_12, "WRITE AND VERIFY(12)", [0xf2, ...FF4, ...FF4, 0x1f, 0], "write", writeAndVerify),
  row(OPCODE.VERIFY_12, "VERIFY(12)", [0xf6, ...FF4, ...FF4, 0x1f, 0], "read", verify),
];

const BY_OPCODE = new Map<number, CommandDescriptor[]>();
for (const command of COMMANDS) {
  const rows = BY_OPCODE.get(command.opcode) ?? [];
  rows.push(command);
  BY_OPCODE.set(command.opcode, rows);
}

/**
 * The row for a CDB: undefined for an opcode we do not serve (INVALID COMMAND OPERATION CODE);
 * an unknown service action of a known opcode is INVALID FIELD IN CDB (SPC-5 §4.2.5.1).
 */
export function findCommand(cdb: Buffer): CommandDescriptor | undefined {
  const rows = BY_OPCODE.get(cdb[0]);
  if (rows === undefined) return undefined;
  if (rows[0].serviceAction === undefined) return rows[0];
  const serviceAction = cdb[1] & 0x1f;
  const found = rows.find((command) => command.serviceAction === serviceAction);
  if (found === undefined) throw invalidCdbField(1, 4);
  return found;
}
