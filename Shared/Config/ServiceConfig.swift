// Settings every Skiff service reads: where it listens and how it reaches Postgres, Redis and its peers.
import Foundation
import Logging

/// The configuration shared by all six executables.
public struct ServiceConfig: Sendable {
    public var host: String
    public var port: Int
    /// `WEBUI_SECRET_KEY`: the HS256 key for session tokens.
    public var secretKey: String
    /// `SKIFF_INTERNAL_SECRET`: proves a request came through the gateway.
    public var internalSecret: String
    /// `DATABASE_URL`.
    public var databaseURL: String
    /// `DATABASE_POOL_SIZE`.
    public var databasePoolSize: Int
    /// `REDIS_URL`.
    public var redisURL: String
    public var logLevel: Logger.Level
    public var environment: Environment

    public init(environment env: Environment = Environment(), defaultPort: Int) {
        self.environment = env
        self.host = env.string("HOST", default: "127.0.0.1")
        self.port = env.int("PORT", default: defaultPort)
        self.secretKey = env.string("WEBUI_SECRET_KEY", default: "t0p-s3cr3t")
        self.internalSecret = env.string("SKIFF_INTERNAL_SECRET", default: "skiff-internal-dev-secret")
        self.databaseURL = env.string("DATABASE_URL", default: "postgresql://postgres@127.0.0.1:55432/skiff")
        self.databasePoolSize = env.int("DATABASE_POOL_SIZE", default: 10)
        self.redisURL = env.string("REDIS_URL", default: "redis://127.0.0.1:56379/0")
        let level = env.string("GLOBAL_LOG_LEVEL", default: "info").lowercased()
        self.logLevel = Logger.Level(rawValue: level == "warn" ? "warning" : level) ?? .info
    }

    /// A logger labelled with the service name at the configured level.
    public func logger(_ label: String) -> Logger {
        var logger = Logger(label: label) { SkiffLogHandler(label: $0) }
        logger.logLevel = logLevel
        return logger
    }
}
