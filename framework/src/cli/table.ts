// Plain text tables for the CLI: left-aligned columns separated by two spaces, header in capitals;
// and aligned key-value lists for `show` commands.

export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? "").length)));
  const line = (cells: string[]): string => cells.map((cell, column) => cell.padEnd(widths[column])).join("  ").trimEnd();
  return [line(headers.map((header) => header.toUpperCase())), ...rows.map(line)].join("\n");
}

/** "key  value" lines with the values aligned, for `show` commands. */
export function formatKeyValues(lines: Array<[string, string]>): string {
  const width = Math.max(...lines.map(([key]) => key.length));
  return lines.map(([key, value]) => `${key.padEnd(width)}  ${value}`).join("\n");
}
