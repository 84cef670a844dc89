// fast-check arbitraries of byte ranges inside a device, for the model-based engine tests: half of
// them cluster-aligned, half arbitrary, with lengths skewed towards small requests.
import fc from "fast-check";
import { CLUSTER_SIZE_BYTES } from "../../volumedriver/src/engine/vpool-types.ts";

export interface ByteRange {
  offsetBytes: number;
  lengthBytes: number;
}

export interface ByteRangeLimits {
  deviceSizeBytes: number;
  /** Longest ordinary request. */
  lengthMaxBytes: number;
  /** Now and then (1 in 10) a request up to this long, e.g. longer than a journal segment (256 clusters); 0: never. */
  largeLengthMaxBytes: number;
}

/** A byte range inside the device: half cluster-aligned, half arbitrary; lengths 1 B..lengthMaxBytes, now and then longer. */
export function byteRangeArbitrary(limits: ByteRangeLimits): fc.Arbitrary<ByteRange> {
  const { deviceSizeBytes, lengthMaxBytes, largeLengthMaxBytes } = limits;
  const lengths: Array<fc.WeightedArbitrary<number>> = [
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 64 }) },
    { weight: 3, arbitrary: fc.integer({ min: 1, max: Math.min(16 * 1024, lengthMaxBytes) }) },
    { weight: 3, arbitrary: fc.integer({ min: 1, max: lengthMaxBytes }) },
  ];
  if (largeLengthMaxBytes > lengthMaxBytes) lengths.push({ weight: 1, arbitrary: fc.integer({ min: lengthMaxBytes, max: largeLengthMaxBytes }) });
  return fc
    .record({
      aligned: fc.boolean(),
      lengthBytes: fc.oneof(...lengths),
      position: fc.integer({ min: 0, max: deviceSizeBytes - 1 }),
    })
    .map(({ aligned, lengthBytes, position }) => {
      let length = Math.min(lengthBytes, deviceSizeBytes);
      let offset = position;
      if (aligned) {
        length = Math.max(CLUSTER_SIZE_BYTES, length - (length % CLUSTER_SIZE_BYTES));
        offset -= offset % CLUSTER_SIZE_BYTES;
      }
      offset = Math.min(offset, deviceSizeBytes - length);
      return { offsetBytes: offset, lengthBytes: length };
    });
}
