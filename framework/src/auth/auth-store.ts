// The API's view of users and API clients (auth-routes.ts): the admin made on the first start,
// password and client-secret checks, and API clients, all kept in the framework's model
// (model/framework-model.ts: DATA/framework.db, users and api_clients with scrypt hashes). Nothing
// here ever logs a secret.
import { randomBytes } from "node:crypto";
import { FrameworkModel } from "../model/framework-model.ts";
import { ModelError } from "../model/model-error.ts";
import type { Role } from "./secrets.ts";

export { hashSecret, type Role, roleAllows, ROLES, verifySecret } from "./secrets.ts";

export interface ApiClientInfo { clientId: string; role: Role; description: string; createdAt: string }

export class AuthStore {
  private constructor(private readonly model: FrameworkModel, private readonly ownsModel: boolean) {}

  /** Opens (creating if needed) the framework's model file and uses its users and API clients. */
  static open(file: string): AuthStore {
    return new AuthStore(FrameworkModel.open(file), true);
  }

  /** Uses a model someone else opened (and closes). */
  static over(model: FrameworkModel): AuthStore {
    return new AuthStore(model, false);
  }

  /** Creates the admin user (role manage) when there is none; returns its new password then (to be stored 0600), else undefined. */
  async ensureAdmin(name = "admin"): Promise<string | undefined> {
    try {
      this.model.users.get(name);
      return undefined;
    } catch (error) {
      if (!(error instanceof ModelError && error.kind === "NotFound")) throw error;
    }
    const password = randomBytes(18).toString("base64url");
    await this.model.users.create({ name, password, role: "manage" });
    return password;
  }

  async addUser(name: string, password: string, role: Role): Promise<void> {
    await this.model.users.create({ name, password, role });
  }

  /** The user's role when the password is right, else undefined (unknown user or wrong password alike). */
  async verifyUser(name: string, password: string): Promise<Role | undefined> {
    return (await this.model.users.verifyPassword(name, password))?.role;
  }

  /** A new API client (client credentials grant); the secret is returned once and stored only hashed. */
  async createClient(role: Role, description: string): Promise<{ clientId: string; clientSecret: string; info: ApiClientInfo }> {
    const created = await this.model.apiClients.create({ description, role });
    return { clientId: created.client.clientId, clientSecret: created.secret, info: created.client };
  }

  async verifyClient(clientId: string, clientSecret: string): Promise<Role | undefined> {
    return (await this.model.apiClients.verify(clientId, clientSecret))?.role;
  }

  listClients(): ApiClientInfo[] {
    return this.model.apiClients.list();
  }

  deleteClient(clientId: string): boolean {
    try {
      this.model.apiClients.delete(clientId);
      return true;
    } catch (error) {
      if (error instanceof ModelError && error.kind === "NotFound") return false;
      throw error;
    }
  }

  close(): void {
    if (this.ownsModel) this.model.close();
  }
}
