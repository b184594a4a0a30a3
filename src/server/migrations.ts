// The SQLite schema as an ordered list of migrations. The applied version
// lives in the database header (PRAGMA user_version), and each migration and
// its version bump commit together, so a crash mid-upgrade leaves the
// database at the previous version, ready to retry.
import type Database from 'better-sqlite3';

export interface Migration {
  /** 1, 2, 3, ...: the user_version the database has once this is applied. */
  version: number;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    // AUTOINCREMENT: audit entries name rows by id ("node:7"), so an id is
    // never handed out again after its row is deleted. Addresses and names
    // are plain UNIQUE columns: deleting a node frees them for reuse.
    sql: `
      CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
      );

      CREATE TABLE auth_keys (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        prefix TEXT NOT NULL UNIQUE,
        secret_hash TEXT NOT NULL,
        user_id INTEGER REFERENCES users(id),
        tags TEXT NOT NULL DEFAULT '[]',
        reusable INTEGER NOT NULL CHECK (reusable IN (0, 1)),
        ephemeral INTEGER NOT NULL CHECK (ephemeral IN (0, 1)),
        preauthorized INTEGER NOT NULL CHECK (preauthorized IN (0, 1)),
        expires_at INTEGER,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER,
        used_count INTEGER NOT NULL DEFAULT 0 CHECK (used_count >= 0),
        last_used_at INTEGER,
        -- A single-use key can never count a second use, whatever the code does.
        CHECK (reusable = 1 OR used_count <= 1)
      );
      CREATE INDEX auth_keys_user_id ON auth_keys(user_id);

      CREATE TABLE nodes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        node_key TEXT NOT NULL UNIQUE,
        requested_hostname TEXT NOT NULL,
        name TEXT NOT NULL UNIQUE,
        user_id INTEGER REFERENCES users(id),
        tags TEXT NOT NULL DEFAULT '[]',
        ipv4 TEXT NOT NULL UNIQUE,
        ipv6 TEXT NOT NULL UNIQUE,
        endpoints TEXT NOT NULL DEFAULT '[]',
        ephemeral INTEGER NOT NULL CHECK (ephemeral IN (0, 1)),
        authorized INTEGER NOT NULL CHECK (authorized IN (0, 1)),
        auth_key_id INTEGER REFERENCES auth_keys(id),
        key_expiry INTEGER,
        created_at INTEGER NOT NULL,
        last_seen INTEGER
      );
      -- Foreign-key children, and "which nodes belong to / came from".
      CREATE INDEX nodes_user_id ON nodes(user_id);
      CREATE INDEX nodes_auth_key_id ON nodes(auth_key_id);

      CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}'
      );
    `,
  },
  {
    version: 2,
    // Routes go with their node. The policy is one row: its text as set, so
    // `policy get` gives back exactly what the admin wrote, comments included.
    sql: `
      CREATE TABLE routes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        node_id INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        prefix TEXT NOT NULL,
        advertised INTEGER NOT NULL CHECK (advertised IN (0, 1)),
        approved INTEGER NOT NULL CHECK (approved IN (0, 1)),
        created_at INTEGER NOT NULL,
        UNIQUE (node_id, prefix)
      );
      CREATE INDEX routes_prefix ON routes(prefix);

      CREATE TABLE policy (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        text TEXT NOT NULL,
        updated_at INTEGER NOT NULL
      );
    `,
  },
];

export function schemaVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/** The version the newest migration reaches. */
export function latestVersion(migrations: readonly Migration[] = MIGRATIONS): number {
  return migrations.length === 0 ? 0 : migrations[migrations.length - 1].version;
}

/**
 * Applies every migration newer than the database, each in its own
 * transaction; returns the version reached. Refuses a database written by a
 * newer meshd rather than run against a schema it does not know.
 */
export function migrate(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS): number {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration ${i + 1} has version ${m.version}: versions must be 1, 2, 3, ...`);
  });
  const latest = latestVersion(migrations);
  // Read and apply under one write lock, so two processes opening the same
  // file at once cannot both apply the same migration.
  const step = db.transaction((m: Migration): boolean => {
    if (schemaVersion(db) >= m.version) return false;
    db.exec(m.sql);
    db.pragma(`user_version = ${m.version}`);
    return true;
  });
  const current = schemaVersion(db);
  if (current > latest) throw new Error(`database schema version ${current} is newer than this meshd supports (${latest})`);
  for (const m of migrations) {
    if (m.version > current) step.immediate(m);
  }
  return schemaVersion(db);
}
