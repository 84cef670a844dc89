// Writing a benchmark's section of docs/BENCHMARKS.md: the part a run generates is replaced, the
// hand-written notes after its end marker (up to the next section) are kept.
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

export const BENCHMARKS_DOC_PATH = fileURLToPath(new URL("../../docs/BENCHMARKS.md", import.meta.url));

/**
 * Replaces the section that starts with `title` by `generated` (which starts with the title and
 * ends with `endMarker`), keeping what follows the old marker; appends the section when absent.
 */
export async function writeBenchmarkSection(title: string, generated: string, endMarker: string): Promise<void> {
  let document = await readFile(BENCHMARKS_DOC_PATH, "utf8");
  const start = document.indexOf(title);
  if (start < 0) {
    document = `${document.trimEnd()}\n\n${generated}\n`;
  } else {
    const markerAt = document.indexOf(endMarker, start);
    const nextSection = document.indexOf("\n## ", start + title.length);
    const markerInSection = markerAt >= 0 && (nextSection < 0 || markerAt < nextSection);
    const end = markerInSection ? markerAt + endMarker.length : nextSection >= 0 ? nextSection : document.length;
    const rest = document.slice(end);
    document = document.slice(0, start) + generated + (markerInSection ? rest : `\n${rest}`);
  }
  await writeFile(BENCHMARKS_DOC_PATH, document);
  console.log(`updated ${BENCHMARKS_DOC_PATH}`);
}
