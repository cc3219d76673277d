// The auth service: accounts, sessions, API keys, users, groups and the persistent admin config.
import Foundation
import Hummingbird
import Shared

let config = ServiceConfig(defaultPort: 8081)
let runtime = try ServiceRuntime(name: "auth", config: config)
let settings = AuthSettings(environment: config.environment)
let accounts = Accounts(
    users: UserStore(postgres: runtime.postgres, logger: runtime.logger),
    groups: GroupStore(postgres: runtime.postgres, logger: runtime.logger),
    config: ConfigStore(postgres: runtime.postgres, defaults: settings.defaults, logger: runtime.logger),
    tokens: SessionTokens(secret: config.secretKey),
    outbox: Outbox(schema: "auth", stream: EventStream.auth),
    postgres: runtime.postgres, redis: runtime.redis, settings: settings, logger: runtime.logger)

let templateURL = Bundle.module.url(forResource: "Templates/app-config", withExtension: "json")
    ?? Bundle.module.url(forResource: "app-config", withExtension: "json", subdirectory: "Templates")!
let template = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: templateURL))

let router = runtime.makeRouter()
router.addRoutes(AuthsController(accounts: accounts).routes, atPath: "/api/v1/auths")
router.addRoutes(UsersController(accounts: accounts).routes, atPath: "/api/v1/users")
router.addRoutes(GroupsController(accounts: accounts).routes, atPath: "/api/v1/groups")
router.addRoutes(AppConfigController(accounts: accounts, template: template).routes, atPath: "/api/config")
router.addRoutes(ConfigsController(accounts: accounts).routes, atPath: "/api/v1/configs")
router.addRoutes(InternalController(accounts: accounts).routes, atPath: "/internal")

let relay = OutboxRelay(outbox: accounts.outbox, postgres: runtime.postgres, redis: runtime.redis, logger: runtime.logger)
// Other auth replicas' changes reach this one's caches through the stream.
let follower = StreamFollower(redis: try RedisClient(url: config.redisURL), stream: EventStream.auth, logger: runtime.logger) {
    event in
    accounts.sessions.apply(event)
    // Only a config change makes the cached config stale (every other auth event concerns users and groups).
    if event.type == "config.updated" { accounts.config.invalidate() }
}
let app = runtime.makeApplication(
    router: router, schema: "auth",
    migrations: Bundle.module.url(forResource: "Migrations", withExtension: nil)!,
    services: [relay, follower])
try await app.runUntilStopped()
