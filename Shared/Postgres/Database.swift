// Builds the postgres-nio client from DATABASE_URL.
import Foundation
import Logging
import NIOConcurrencyHelpers
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
        // A short idle timeout. postgres-nio arms an idle timer (two child tasks and a `Task.sleep`) each time a
        // connection goes idle, thousands of times a second under load; a cancelled sleep's Dispatch timer stays
        // queued for the whole timeout, so at the default 60 s a benchmark left hundreds of thousands of them
        // (chat: 200 MB resident, 15% of a core spent re-sorting Dispatch's timer heap after the load ended).
        // At 5 s the queue stays small (chat list 3,900 → 4,050–4,200 req/s, new chats 2,150 → 2,700–3,000). A
        // busy pool's connections never sit idle that long; a quiet one closes them and reconnects when needed.
        // Keeping every connection open (`minimumConnections`) would avoid the timers altogether, but
        // postgres-nio 1.33.2 then stops the process on a precondition when Postgres restarts.
        configuration.options.connectionIdleTimeout = .seconds(5)
        // No keep-alive pings: the same kind of timer per idle transition. A connection that died while idle
        // fails its next query once.
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

/// `ANALYZE` of one table after a bulk load, at most once per `interval` in this process, in the background.
/// Until autovacuum's next round (up to a minute), Postgres plans a table it has never analyzed from guesses:
/// freshly imported chats were listed through a bitmap scan and a sort instead of the ordered index, at twice
/// Postgres's cost per request. Refreshing after a bulk load is Postgres's own advice.
public final class TableStatistics: Sendable {
    let table: String
    let interval: Duration
    private let last = NIOLockedValueBox<ContinuousClock.Instant?>(nil)

    public init(table: String, interval: Duration) {
        self.table = table
        self.interval = interval
    }

    public func refresh(_ postgres: PostgresClient, logger: Logger) {
        let now = ContinuousClock.now
        let due = last.withLockedValue { last -> Bool in
            if let previous = last, previous + interval > now { return false }
            last = now
            return true
        }
        guard due else { return }
        let table = self.table
        Task {
            do {
                try await postgres.query(PostgresQuery(unsafeSQL: "ANALYZE \(table)"), logger: logger)
            } catch {
                logger.debug("analyze failed", metadata: ["table": "\(table)", "error": "\(String(reflecting: error))"])
            }
        }
    }
}
