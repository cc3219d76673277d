// The chat service: chat history, folders, tags and shares (later: models and completions).
import AsyncHTTPClient
import Foundation
import Hummingbird
import Shared

let config = ServiceConfig(defaultPort: 8082)
let runtime = try ServiceRuntime(name: "chat", config: config)
let history = ChatHistory(postgres: runtime.postgres, redis: runtime.redis, logger: runtime.logger)

let router = runtime.makeRouter()
let chats = ChatsController(history: history)
router.addRoutes(chats.routes, atPath: "/api/v1/chats")
router.addRoutes(chats.extraRoutes, atPath: "/api/v1/chats")
router.addRoutes(chats.internalRoutes, atPath: "/internal/chats")
router.addRoutes(FoldersController(history: history).routes, atPath: "/api/v1/folders")
let httpClient = HTTPClient(eventLoopGroupProvider: .singleton)
let auth = AuthLookup(
    client: httpClient, baseURL: config.environment.string("SKIFF_AUTH_URL", default: "http://127.0.0.1:8081"),
    internalSecret: config.internalSecret)
let policies = PolicyCache(auth: auth)
let notes = NotesController(history: history, policies: policies, auth: auth)
router.addRoutes(notes.routes, atPath: "/api/v1/notes")
router.addRoutes(notes.internalRoutes, atPath: "/internal/notes")
let adminBypass = config.environment.bool(
    "BYPASS_ADMIN_ACCESS_CONTROL", default: config.environment.bool("ENABLE_ADMIN_WORKSPACE_CONTENT_ACCESS", default: true))
router.addRoutes(
    PromptsController(history: history, policies: policies, auth: auth, adminBypass: adminBypass).routes,
    atPath: "/api/v1/prompts")
let plugins = PluginStore(history: history, auth: auth)
router.addRoutes(
    ToolsController(store: plugins, policies: policies, adminBypass: adminBypass).routes, atPath: "/api/v1/tools")
router.addRoutes(FunctionsController(store: plugins).routes, atPath: "/api/v1/functions")
router.addRoutes(
    SkillsController(store: plugins, policies: policies, adminBypass: adminBypass).routes,
    atPath: "/api/v1/skills")

router.addRoutes(
    MemoriesController(
        history: history, policies: policies, embedder: Embedder.configured(config.environment, client: httpClient, logger: runtime.logger),
        threshold: Double(config.environment.string("RAG_RELEVANCE_THRESHOLD", default: "0")) ?? 0
    ).routes, atPath: "/api/v1/memories")
router.addRoutes(
    UsageController(
        redis: runtime.redis,
        publicCount: config.environment.bool("ENABLE_PUBLIC_ACTIVE_USERS_COUNT", default: true)
    ).routes, atPath: "/api/usage")

let relay = OutboxRelay(outbox: history.outbox, postgres: runtime.postgres, redis: runtime.redis, logger: runtime.logger)
// A deleted user's chats, folders, tags and shares go too; the consumer group makes sure one replica does it
// even if the one that read the event died first.
let accountEvents = StreamConsumer(
    redis: try RedisClient(url: config.redisURL), stream: EventStream.auth, group: "chat", logger: runtime.logger
) { event in
    guard event.type == "user.deleted", let userID = event.data["user_id"]?.stringValue else { return }
    try await history.chats.deleteUserData(userID: userID)
}
let app = runtime.makeApplication(
    router: router, schema: "chat",
    migrations: Bundle.module.url(forResource: "Migrations", withExtension: nil)!,
    services: [relay, accountEvents])
try await app.runUntilStopped()
try await httpClient.shutdown().get()
