// Entry of the scrub worker thread: the sources are TypeScript run through tsx (no build step), and
// a worker does not inherit a loader registered with register(), so it registers its own.
import { register } from "tsx/esm/api";
register();
await import("./scrub-worker.ts");
