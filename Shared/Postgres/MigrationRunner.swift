// Applies a service's numbered SQL files once, in order, under an advisory lock so replicas can start together.
import Foundation
import Logging
import PostgresNIO

/// One numbered migration file, e.g. `001_users.sql`.
public struct Migration: Sendable {
    public var version: Int
    public var name: String
    public var sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// Loads `NNN_name.sql` files from a directory (a service's resource bundle), sorted by number.
    public static func load(from directory: URL) throws -> [Migration] {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        return try files.filter { $0.hasSuffix(".sql") }.compactMap { file -> Migration? in
            guard let number = Int(file.prefix { $0.isNumber }) else { return nil }
            let sql = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            return Migration(version: number, name: file, sql: sql)
        }.sorted { $0.version < $1.version }
    }

    /// Statements of the file: each ends with `;` at the end of a line (no function bodies in migrations).
    var statements: [String] {
        var result: [String] = []
        var current = ""
        for line in sql.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("--") { continue }
            current += line + "\n"
            if trimmed.hasSuffix(";") {
                result.append(current)
                current = ""
            }
        }
        if !current.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { result.append(current) }
        return result
    }
}

/// Runs migrations for one schema.
public struct MigrationRunner: Sendable {
    public var schema: String
    public var migrations: [Migration]

    public init(schema: String, migrations: [Migration]) {
        self.schema = schema
        self.migrations = migrations
    }

    /// Applies what is missing; retries while Postgres is not yet reachable (up to `attempts`).
    public func run(on client: PostgresClient, logger: Logger, attempts: Int = 30) async throws {
        var attempt = 0
        while true {
            do {
                try await apply(on: client, logger: logger)
                return
            } catch {
                attempt += 1
                if attempt >= attempts { throw error }
                logger.warning("migrations waiting for Postgres", metadata: ["error": "\(String(reflecting: error))"])
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    func apply(on client: PostgresClient, logger: Logger) async throws {
        let lockKey = Int64(truncatingIfNeeded: Self.stableHash("skiff.migrations.\(schema)"))
        try await client.withConnection { connection in
            try await connection.query("SELECT pg_advisory_lock(\(lockKey))", logger: logger)
            do {
                try await connection.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \(schema)"), logger: logger)
                try await connection.query(
                    PostgresQuery(
                        unsafeSQL: """
                            CREATE TABLE IF NOT EXISTS \(schema).migrations (
                                version integer PRIMARY KEY,
                                name text NOT NULL,
                                applied_at timestamptz NOT NULL DEFAULT now())
                            """), logger: logger)
                var applied = Set<Int>()
                let rows = try await connection.query(
                    PostgresQuery(unsafeSQL: "SELECT version FROM \(schema).migrations"), logger: logger)
                for try await version in rows.decode(Int.self) { applied.insert(version) }
                for migration in migrations where !applied.contains(migration.version) {
                    try await connection.withTransaction(logger: logger) { transaction in
                        try await transaction.query(PostgresQuery(unsafeSQL: "SET LOCAL search_path TO \(schema)"), logger: logger)
                        for statement in migration.statements {
                            try await transaction.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                        }
                        try await transaction.query(
                            "INSERT INTO \(unescaped: schema).migrations (version, name) VALUES (\(migration.version), \(migration.name))",
                            logger: logger)
                    }
                    logger.info("applied migration", metadata: ["schema": "\(schema)", "file": "\(migration.name)"])
                }
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(lockKey))", logger: logger)
                throw error
            }
            try await connection.query("SELECT pg_advisory_unlock(\(lockKey))", logger: logger)
        }
    }

    /// FNV-1a, so every replica derives the same lock number (Swift's `hashValue` is seeded per process).
    static func stableHash(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }
}
