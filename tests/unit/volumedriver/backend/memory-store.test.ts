// The memory store keeps the ObjectStore contract.
import { MemoryObjectStore } from "../../../../volumedriver/src/backend/memory-store.ts";
import { runObjectStoreContract } from "./object-store-contract.ts";

runObjectStoreContract("memory", async () => ({ store: new MemoryObjectStore(), cleanup: async () => undefined }));
