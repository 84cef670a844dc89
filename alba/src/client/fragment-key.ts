// Where a fragment lives on an ASD: `f/<objectId>/<chunkIndex>/<fragmentIndex>`. The object id
// comes first so maintenance can tell an orphan (no manifest, no pending upload) from the key alone.

const FRAGMENT_KEY_PATTERN = /^f\/([0-9a-f]{32})\/(\d{1,9})\/(\d{1,2})$/;

export interface FragmentAddress {
  objectId: string;
  chunkIndex: number;
  fragmentIndex: number;
}

export function fragmentKey(address: FragmentAddress): string {
  return `f/${address.objectId}/${address.chunkIndex}/${address.fragmentIndex}`;
}

/** The address in a fragment key, or undefined for a key that is not one (left alone by maintenance). */
export function parseFragmentKey(key: string): FragmentAddress | undefined {
  const match = FRAGMENT_KEY_PATTERN.exec(key);
  if (match === null) return undefined;
  return { objectId: match[1]!, chunkIndex: Number(match[2]), fragmentIndex: Number(match[3]) };
}

/** The ASD key prefix of every fragment of one object. */
export function objectFragmentPrefix(objectId: string): string {
  return `f/${objectId}/`;
}
