// Where the S3 store keeps a namespace and its objects: one bucket per namespace, or one shared
// bucket with a key prefix per namespace. Pure name arithmetic, no I/O, so every mapping rule is
// unit-tested without a server. Invariant: objectKey and keyOfObjectKey are inverse, and a layout
// never maps two (namespace, key) pairs to one (bucket, object key).
import { KEY_SIZE_BYTES_MAX, NAMESPACE_NAME_PATTERN, StoreError } from "./object-store.ts";
import type { NamespaceName } from "./object-store.ts";

/** One bucket per namespace, named `bucketPrefix + namespace`; listNamespaces shows only buckets with that prefix. */
export interface BucketPerNamespaceMapping {
  kind: "bucketPerNamespace";
  /** Prepended to every namespace to form its bucket name, e.g. "ovs-". Default "" (then every bucket is a namespace). */
  bucketPrefix?: string;
}

/** One existing bucket; namespace N lives under the keys `prefix/N/`, marked by the object `prefix/.namespaces/N`. */
export interface SharedBucketMapping {
  kind: "sharedBucket";
  bucket: string;
  /** Key prefix of everything this store writes, without a trailing "/"; "" puts namespaces at the bucket's root. */
  prefix: string;
}

export type S3NamespaceMapping = BucketPerNamespaceMapping | SharedBucketMapping;

/** S3 bucket naming rules (the DNS-compatible ones, which Swift's s3api and Ceph RGW enforce too). */
const BUCKET_NAME_PATTERN = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function bucketNameProblem(bucket: string): string | undefined {
  if (!BUCKET_NAME_PATTERN.test(bucket)) return "use 3-63 of [a-z0-9.-], starting and ending with a letter or digit";
  if (bucket.includes("..") || bucket.includes(".-") || bucket.includes("-.")) return "no '..', '.-' or '-.'";
  if (/^\d+\.\d+\.\d+\.\d+$/.test(bucket)) return "not shaped like an IP address";
  return undefined;
}

export class S3NamespaceLayout {
  readonly mapping: S3NamespaceMapping;
  /** Shared mode: the key prefix of the store's area, "" or ending in "/". */
  private readonly rootPrefix: string;

  constructor(mapping: S3NamespaceMapping) {
    this.mapping = mapping;
    if (mapping.kind === "sharedBucket") {
      const problem = bucketNameProblem(mapping.bucket);
      if (problem !== undefined) throw new RangeError(`sharedBucket.bucket ${JSON.stringify(mapping.bucket)}: ${problem}`);
      if (mapping.prefix.startsWith("/") || mapping.prefix.endsWith("/")) {
        throw new RangeError(`sharedBucket.prefix ${JSON.stringify(mapping.prefix)}: give it without a leading or trailing "/"`);
      }
      this.rootPrefix = mapping.prefix === "" ? "" : `${mapping.prefix}/`;
    } else {
      const bucketPrefix = mapping.bucketPrefix ?? "";
      if (!/^[a-z0-9.-]{0,40}$/.test(bucketPrefix)) {
        throw new RangeError(`bucketPrefix ${JSON.stringify(bucketPrefix)}: use at most 40 of [a-z0-9.-]`);
      }
      this.rootPrefix = "";
    }
  }

  get sharedBucket(): boolean {
    return this.mapping.kind === "sharedBucket";
  }

  /** The bucket holding `namespace` (validated already); a namespace whose bucket name S3 refuses is Invalid. */
  bucket(namespace: NamespaceName): string {
    if (this.mapping.kind === "sharedBucket") return this.mapping.bucket;
    const bucket = `${this.mapping.bucketPrefix ?? ""}${namespace}`;
    const problem = bucketNameProblem(bucket);
    if (problem !== undefined) {
      throw new StoreError("Invalid", `namespace ${JSON.stringify(namespace)} makes the bucket name ${JSON.stringify(bucket)}, which S3 refuses: ${problem}`);
    }
    return bucket;
  }

  /** The key prefix of every object of `namespace` inside its bucket. */
  namespacePrefix(namespace: NamespaceName): string {
    return this.mapping.kind === "sharedBucket" ? `${this.rootPrefix}${namespace}/` : "";
  }

  /**
   * The S3 object key of `key`. S3 keys are at most 1024 UTF-8 bytes, and in a shared bucket the
   * namespace prefix counts too: a key that no longer fits is Invalid (not a server error later).
   */
  objectKey(namespace: NamespaceName, key: string): string {
    const objectKey = `${this.namespacePrefix(namespace)}${key}`;
    if (Buffer.byteLength(objectKey, "utf8") > KEY_SIZE_BYTES_MAX) {
      throw new StoreError("Invalid", `key of ${Buffer.byteLength(key, "utf8")} bytes is too long for namespace ${namespace} in shared bucket `
        + `${this.bucket(namespace)}: with the prefix ${JSON.stringify(this.namespacePrefix(namespace))} it exceeds S3's ${KEY_SIZE_BYTES_MAX} bytes`);
    }
    return objectKey;
  }

  /** The longest key (UTF-8 bytes) `namespace` can hold. */
  keySizeBytesMax(namespace: NamespaceName): number {
    return KEY_SIZE_BYTES_MAX - Buffer.byteLength(this.namespacePrefix(namespace), "utf8");
  }

  /** The store key of an object key listed in `namespace`'s bucket under its prefix. */
  keyOfObjectKey(namespace: NamespaceName, objectKey: string): string {
    const prefix = this.namespacePrefix(namespace);
    if (!objectKey.startsWith(prefix)) throw new StoreError("Internal", `listed key ${JSON.stringify(objectKey)} lies outside ${JSON.stringify(prefix)}`);
    return objectKey.slice(prefix.length);
  }

  /**
   * Shared mode: the prefix of the namespace markers. ".namespaces" cannot be a namespace name
   * (those start with a letter or digit), so markers never mix with objects.
   */
  get markerPrefix(): string {
    return `${this.rootPrefix}.namespaces/`;
  }

  markerKey(namespace: NamespaceName): string {
    return `${this.markerPrefix}${namespace}`;
  }

  /** Where the conditional-write probe may write in `bucket` (shared mode: outside every namespace). */
  probeKey(nonceHex: string): string {
    return this.mapping.kind === "sharedBucket" ? `${this.rootPrefix}.probes/${nonceHex}` : `.ovs-conditional-write-probe-${nonceHex}`;
  }

  /** Bucket-per-namespace mode: the namespace a listed bucket holds, or undefined if it is not one of ours. */
  namespaceOfBucket(bucket: string): NamespaceName | undefined {
    if (this.mapping.kind === "sharedBucket") return undefined;
    const bucketPrefix = this.mapping.bucketPrefix ?? "";
    if (!bucket.startsWith(bucketPrefix)) return undefined;
    const namespace = bucket.slice(bucketPrefix.length);
    return NAMESPACE_NAME_PATTERN.test(namespace) ? namespace : undefined;
  }
}
