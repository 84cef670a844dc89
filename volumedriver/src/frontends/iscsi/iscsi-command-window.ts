// Command numbering of one session (RFC 7143 §4.2.2.1): non-immediate commands carry CmdSN and are
// accepted only inside [ExpCmdSN, MaxCmdSN]; ExpCmdSN advances over the contiguous CmdSNs received.
// MaxCmdSN is ExpCmdSN + (commandWindowSize − tasks in flight) − 1, so the window closes while the
// target is busy and the number of commands an initiator can have outstanding stays bounded; it
// never moves backwards once announced. Sequence numbers compare in 32-bit serial arithmetic (RFC 1982).

const TWO_TO_31 = 0x8000_0000;

/** a < b in 32-bit serial number arithmetic (RFC 1982 §3.2). */
export function serialLessThan(a: number, b: number): boolean {
  const difference = (b - a) >>> 0;
  return difference !== 0 && difference < TWO_TO_31;
}

export function serialAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}

export type CommandNumbering =
  /** In the window and new: execute it. */
  | "accept"
  /** RFC 7143 §4.2.2.1: outside the window, or a duplicate inside it: silently ignored. */
  | "ignore";

export class CommandWindow {
  private expected: number;
  private maxAnnounced: number;
  /** CmdSNs received beyond ExpCmdSN (a gap before them), at most the window's size. */
  private readonly ahead = new Set<number>();

  constructor(initialCmdSN: number, private readonly windowSize: number) {
    this.expected = initialCmdSN >>> 0;
    this.maxAnnounced = serialAdd(this.expected, windowSize - 1);
  }

  get expCmdSN(): number {
    return this.expected;
  }

  /** The MaxCmdSN to announce now, given the tasks in flight; never below one announced before. */
  maxCmdSN(tasksInFlight: number): number {
    const open = Math.max(0, this.windowSize - tasksInFlight);
    const candidate = serialAdd(this.expected, open - 1);
    if (serialLessThan(this.maxAnnounced, candidate)) this.maxAnnounced = candidate;
    return this.maxAnnounced;
  }

  /**
   * Numbers one command. Immediate commands are not numbered (they carry ExpCmdSN and do not
   * advance it). A non-immediate command is accepted once, inside the window.
   */
  receive(cmdSN: number, immediate: boolean): CommandNumbering {
    if (immediate) return "accept";
    if (serialLessThan(cmdSN, this.expected) || serialLessThan(this.maxAnnounced, cmdSN)) return "ignore";
    if (cmdSN === this.expected) {
      this.expected = serialAdd(this.expected, 1);
      while (this.ahead.delete(this.expected)) this.expected = serialAdd(this.expected, 1);
      return "accept";
    }
    if (this.ahead.has(cmdSN)) return "ignore";
    this.ahead.add(cmdSN);
    return "accept";
  }

  /**
   * RFC 7143 §11.5.1 ABORT TASK case b): a referenced command the target never received, inside the
   * window and before the TMF, is considered received, closing the gap it left.
   */
  considerReceived(cmdSN: number): void {
    if (serialLessThan(cmdSN, this.expected) || serialLessThan(this.maxAnnounced, cmdSN)) return;
    this.receive(cmdSN, false);
  }

  /** Whether `cmdSN` lies in [ExpCmdSN, limit) (for the ABORT TASK rule above). */
  isPending(cmdSN: number, limit: number): boolean {
    return !serialLessThan(cmdSN, this.expected) && serialLessThan(cmdSN, limit) && !this.ahead.has(cmdSN);
  }
}
