// Builds the postgres-nio client from DATABASE_URL.
import Foundation
import Logging
import PostgresNIO

/// Connection settings parsed from a `postgresql://` URL.
public enum Database {
    /// Parses `postgresql://user:password@host:port/database` (also `postgres://`).
    public static func configuration(url: String, poolSize: Int) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url),
            let scheme = components.scheme, scheme.hasPrefix("postgres")
        else {
            throw ConfigurationError("DATABASE_URL must be a postgresql:// URL")
        }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        var configuration = PostgresClient.Configuration(
            host: components.host ?? "127.0.0.1",
            port: components.port ?? 5432,
            username: components.user?.removingPercentEncoding ?? "postgres",
            password: components.password?.removingPercentEncoding,
            database: database.isEmpty ? nil : database,
            tls: .disable
        )
        configuration.options.maximumConnections = max(1, poolSize)
        configuration.options.connectTimeout = .seconds(3)
        // No keep-alive pings: postgres-nio arms a keep-alive timer each time a connection goes idle, which under
        // load (connections going idle and busy thousands of times a second) costs a tenth of a request's CPU.
        // A connection that died while idle fails its next query once. (A minimum pool size would save the
        // idle timers too, but postgres-nio 1.33.2 trips a precondition with one when Postgres goes away.)
        configuration.options.keepAliveBehavior = nil
        return configuration
    }

    public static func makeClient(url: String, poolSize: Int, logger: Logger) throws -> PostgresClient {
        PostgresClient(configuration: try configuration(url: url, poolSize: poolSize), backgroundLogger: logger)
    }

    /// True when Postgres answers `SELECT 1` within two seconds.
    public static func isReachable(_ client: PostgresClient) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    try await client.query("SELECT 1")
                    return true
                } catch {
                    return false
                }
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(2))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}

/// A configuration value that cannot be used.
public struct ConfigurationError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension Error {
    /// Whether Postgres refused a write for a unique constraint (SQLSTATE 23505).
    public var isUniqueViolation: Bool {
        (self as? PSQLError)?.serverInfo?[.sqlState] == "23505"
    }
}

extension String {
    /// This text as a literal `LIKE`/`ILIKE` pattern piece (`\`, `%` and `_` escaped).
    public var likeEscaped: String {
        replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
            .replacingOccurrences(of: "_", with: "\\_")
    }
}
