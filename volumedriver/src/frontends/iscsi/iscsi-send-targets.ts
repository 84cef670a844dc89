// Answers to Text Requests (RFC 7143 §11.10, Appendix C): SendTargets lists the targets this
// initiator may log in to, each with the portal it reached us on and our portal group tag. Other keys
// are not negotiable in the full feature phase here and are answered NotUnderstood (RFC 7143 §6.2).
import type { TextPair } from "./iscsi-text.ts";
import type { IscsiTargetEntry, IscsiTargetRegistry } from "./iscsi-types.ts";

/** Targets the initiator may see: those whose ACL admits it (RFC 7143 Appendix C: "authorized" targets only). */
export function visibleTargets(registry: IscsiTargetRegistry, initiatorName: string): IscsiTargetEntry[] {
  return registry.listTargets().filter((target) => target.allowedInitiators === undefined || target.allowedInitiators.includes(initiatorName));
}

/** "host:port,tpgt" with IPv6 hosts in brackets (RFC 7143 §13.8 TargetAddress). */
export function targetAddress(host: string, port: number, targetPortalGroupTag: number): string {
  const bracketed = host.includes(":") ? `[${host}]` : host;
  return `${bracketed}:${port},${targetPortalGroupTag}`;
}

export interface SendTargetsContext {
  registry: IscsiTargetRegistry;
  initiatorName: string;
  discovery: boolean;
  /** The target of a Normal session. */
  sessionTarget: string | undefined;
  portal: string;
}

/**
 * The answer pairs for one complete Text Request. SendTargets=All is for discovery sessions (RFC 7143
 * Appendix C; a Normal session may ask too and gets the same list); SendTargets=<name> lists that
 * target if visible; an empty value in a Normal session means the session's own target.
 */
export function answerTextRequest(pairs: readonly TextPair[], context: SendTargetsContext): TextPair[] {
  const answers: TextPair[] = [];
  for (const pair of pairs) {
    if (pair.key !== "SendTargets") {
      answers.push({ key: pair.key, value: "NotUnderstood" });
      continue;
    }
    const visible = visibleTargets(context.registry, context.initiatorName);
    let listed: IscsiTargetEntry[];
    if (pair.value === "All") listed = visible;
    else if (pair.value === "") listed = context.discovery ? [] : visible.filter((target) => target.name === context.sessionTarget);
    else listed = visible.filter((target) => target.name === pair.value);
    for (const target of listed) {
      answers.push({ key: "TargetName", value: target.name }, { key: "TargetAddress", value: context.portal });
    }
  }
  return answers;
}
