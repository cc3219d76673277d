// Access to the real Postgres and Redis that ./scripts/test starts, and a private Redis server for outage tests.
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import PostgresNIO
@testable import Shared

enum TestInfrastructure {
    static let environment = ProcessInfo.processInfo.environment
    static var postgresURL: String {
        (environment["SKIFF_TEST_PG_URL"] ?? "postgresql://postgres@127.0.0.1:55432/postgres")
    }
    static var redisURL: String { environment["SKIFF_TEST_REDIS_URL"] ?? "redis://127.0.0.1:56379" }
    static let logger = Logger(label: "tests")

    /// Runs `body` with a running Postgres client.
    static func withPostgres<T: Sendable>(_ body: @Sendable (PostgresClient) async throws -> T) async throws -> T {
        let client = try Database.makeClient(url: postgresURL, poolSize: 4, logger: logger)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            let result = try await body(client)
            group.cancelAll()
            return result
        }
    }

    static func uniqueName(_ prefix: String) -> String {
        "\(prefix)_\(UUID().uuidString.prefix(8).lowercased())"
    }

    static func redisClient(database: Int = 9) throws -> RedisClient {
        try RedisClient(url: "\(redisURL)/\(database)")
    }
}

/// A redis-server of the test's own, on a free port, that the test may stop and start.
struct PrivateRedis: Sendable {
    let port: Int

    init() throws {
        var candidate = Int.random(in: 20_000..<40_000)
        // A port nothing answers on, so a stray server cannot stand in for ours.
        while system("redis-cli -p \(candidate) ping >/dev/null 2>&1") == 0 { candidate += 1 }
        port = candidate
        try start()
    }

    var url: String { "redis://127.0.0.1:\(port)/0" }

    func start() throws {
        let status = system(
            "redis-server --port \(port) --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --pidfile /tmp/skiff-test-redis-\(port).pid >/dev/null 2>&1"
        )
        guard status == 0 else { throw RedisError("could not start redis-server") }
        for _ in 0..<50 where system("redis-cli -p \(port) ping >/dev/null 2>&1") != 0 {
            usleep(50_000)
        }
    }

    func stop() {
        _ = system("redis-cli -p \(port) shutdown nosave >/dev/null 2>&1")
    }
}
