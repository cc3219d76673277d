// What every backend service starts with: logger, Postgres pool, Redis client, migrations, health routes.
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import PostgresNIO
import ServiceLifecycle

/// The infrastructure a service runs on, built from its configuration.
public struct ServiceRuntime: Sendable {
    public let name: String
    public let config: ServiceConfig
    public let logger: Logger
    public let postgres: PostgresClient
    public let redis: RedisClient
    public let routeTable = RouteTable()

    public init(name: String, config: ServiceConfig) throws {
        self.name = name
        self.config = config
        self.logger = config.logger(name)
        self.postgres = try Database.makeClient(
            url: config.databaseURL, poolSize: config.databasePoolSize, logger: config.logger("\(name).postgres"))
        self.redis = try RedisClient(url: config.redisURL)
    }

    /// A router with the shared error rendering, the internal-secret check and `/health`, `/health/db`.
    public func makeRouter() -> Router<ServiceRequestContext> {
        let router = Router(context: ServiceRequestContext.self)
        router.add(middleware: ErrorMiddleware(routeTable: routeTable))
        router.add(middleware: InternalAuthMiddleware(secret: config.internalSecret))
        let postgres = self.postgres
        router.get("/health") { _, _ in Encoded(["status": true]) }
        router.get("/health/db") { _, _ -> Encoded<[String: Bool]> in
            guard await Database.isReachable(postgres) else { throw APIError.unavailable }
            return Encoded(["status": true])
        }
        let routeTable = self.routeTable
        router.get("/internal/routes") { _, _ in
            Encoded(routeTable.routes.all.map { ["method": $0.method.rawValue, "path": $0.path] })
        }
        return router
    }

    /// Runs the service's migrations from its bundled `Migrations` folder (waits for Postgres to come up).
    public func migrate(schema: String, directory: URL) async throws {
        let runner = MigrationRunner(schema: schema, migrations: try Migration.load(from: directory))
        try await runner.run(on: postgres, logger: logger)
    }

    /// The application: the router plus Postgres and any background services, stopped gracefully on SIGTERM.
    /// Migrations from `migrations` run once the pool is up and before the server accepts requests.
    public func makeApplication(
        router: Router<ServiceRequestContext>, schema: String, migrations: URL, services: [any Service] = [],
        server: HTTPServerBuilder = .http1()
    ) -> some ApplicationProtocol {
        routeTable.record(router)
        var app = Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname(config.host, port: config.port), serverName: name),
            logger: logger)
        app.addServices(postgres)
        for service in services { app.addServices(service) }
        app.beforeServerStarts {
            try await migrate(schema: schema, directory: migrations)
        }
        return app
    }
}

extension ServiceRuntime {
    /// Runs a service that has only its health routes and migrations so far (later issues fill it).
    public static func runSkeleton(name: String, defaultPort: Int, migrations: URL) async throws {
        let runtime = try ServiceRuntime(name: name, config: ServiceConfig(defaultPort: defaultPort))
        let app = runtime.makeApplication(router: runtime.makeRouter(), schema: name, migrations: migrations)
        try await app.runUntilStopped()
    }
}


extension ApplicationProtocol {
    /// Runs until SIGTERM or SIGINT. A graceful stop that takes longer than `gracePeriod` (a request still
    /// waiting for a database that went away, say) is cut short by cancellation, so the process always ends
    /// before an orchestrator's usual 10 s kill.
    /// Work that ignores cancellation (a query on a connection Postgres closed under it) cannot hold the
    /// process: `ShutdownWatchdog` ends it `cancellationPeriod` after the cancellation.
    public func runUntilStopped(gracePeriod: Duration = .seconds(7), cancellationPeriod: Duration = .milliseconds(1500))
        async throws
    {
        let watchdog = ShutdownWatchdog(limit: gracePeriod + cancellationPeriod, logger: logger)
        // Services stop in the reverse order of the list: the watchdog hears the signal first.
        var configuration = ServiceGroupConfiguration(
            services: [self, watchdog], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        configuration.maximumGracefulShutdownDuration = gracePeriod
        configuration.maximumCancellationDuration = nil
        try await ServiceGroup(configuration: configuration).run()
    }
}

/// Ends the process if a graceful stop has not finished `limit` after it began, with a log line that says so
/// (instead of ServiceLifecycle's crash with a backtrace). The timer runs on Dispatch, outside Swift
/// concurrency, so it fires even if every task is stuck.
struct ShutdownWatchdog: Service {
    let limit: Duration
    let logger: Logger

    func run() async throws {
        // Only a graceful stop arms the timer (a cancelled group, e.g. a service that failed, ends on its own).
        do { try await gracefulShutdown() } catch { return }
        let logger = self.logger
        let (seconds, attoseconds) = limit.components
        let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) {
            logger.error("graceful stop did not finish in time; exiting")
            fflush(nil)
            exit(1)
        }
    }
}
