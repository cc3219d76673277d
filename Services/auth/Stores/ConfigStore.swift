// Owns the SQL of the persistent configuration row, with a short in-process cache for hot reads.
import Foundation
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Shared

/// Reads and writes the admin configuration.
struct ConfigStore: Sendable {
    let postgres: PostgresClient
    let defaults: AdminConfig
    let logger: Logger
    private let cache = NIOLockedValueBox<(config: AdminConfig, loadedAt: ContinuousClock.Instant)?>(nil)
    /// Replicas see each other's changes within this time (and at once through `config.updated`).
    static let cacheLifetime: Swift.Duration = .seconds(1)

    init(postgres: PostgresClient, defaults: AdminConfig, logger: Logger) {
        self.postgres = postgres
        self.defaults = defaults
        self.logger = logger
    }

    /// The current configuration, at most a second old.
    func current() async throws -> AdminConfig {
        if let cached = cache.withLockedValue({ $0 }), ContinuousClock.now - cached.loadedAt < Self.cacheLifetime {
            return cached.config
        }
        return try await fresh()
    }

    /// The configuration read from Postgres now.
    func fresh() async throws -> AdminConfig {
        let rows = try await postgres.query("SELECT data::text FROM auth.config WHERE id = 1", logger: logger)
        var config = defaults
        for try await text in rows.decode(String.self) {
            if case .object(let stored)? = JSONValue.parse(text) {
                config.values.merge(stored) { _, new in new }
            }
        }
        config.refreshPermissions()
        cache.withLockedValue { $0 = (config, .now) }
        return config
    }

    func invalidate() {
        cache.withLockedValue { $0 = nil }
    }

    /// Stores `updates` over what is saved (inside the caller's transaction).
    func save(_ updates: [String: JSONValue], on connection: PostgresConnection) async throws {
        let text = JSONValue.object(updates).jsonText
        let now = Int(Date().timeIntervalSince1970)
        try await connection.query(
            """
            INSERT INTO auth.config (id, data, updated_at) VALUES (1, \(text)::jsonb, \(now))
            ON CONFLICT (id) DO UPDATE SET data = auth.config.data || EXCLUDED.data, updated_at = EXCLUDED.updated_at
            """, logger: logger)
        invalidate()
    }
}
