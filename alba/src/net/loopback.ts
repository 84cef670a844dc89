// Telling a daemon on this host from a remote one, for clients that move to a daemon's Unix socket
// (ASDs, the proxy) when it is local: loopback TCP costs about twice the CPU per byte.

/** Whether `host` (a URL hostname or a bare address) is a loopback address. */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Whether an error (or the error it wraps) says the request never reached a server: nothing listens, or the socket file is missing. */
export function isConnectFailure(error: Error): boolean {
  const code = (error as { code?: unknown }).code ?? (error.cause as { code?: unknown } | undefined)?.code;
  return code === "ECONNREFUSED" || code === "ENOENT";
}
