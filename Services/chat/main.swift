// The chat service: chat history, folders, tags and shares (later: models and completions).
import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOCore
import NIOPosix
import Shared

NIOExecutor.configure()

let config = ServiceConfig(defaultPort: 8082)
let runtime = try ServiceRuntime(name: "chat", config: config)
let history = ChatHistory(postgres: runtime.postgres, redis: runtime.redis, logger: runtime.logger)

let router = runtime.makeRouter()
let chats = ChatsController(history: history)
router.addRoutes(chats.routes, atPath: "/api/v1/chats")
router.addRoutes(chats.extraRoutes, atPath: "/api/v1/chats")
router.addRoutes(chats.internalRoutes, atPath: "/internal/chats")
router.addRoutes(FoldersController(history: history).routes, atPath: "/api/v1/folders")
var clientConfiguration = HTTPClient.Configuration()
// Many completions stream from one provider at once: one connection each, not the default eight per host.
clientConfiguration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 512)
// `AIOHTTP_CLIENT_STREAM_IDLE_TIMEOUT`: a provider silent for this long (seconds) is given up on.
clientConfiguration.timeout = .init(
    connect: .seconds(2), read: .seconds(Int64(config.environment.int("AIOHTTP_CLIENT_STREAM_IDLE_TIMEOUT", default: 600))))
clientConfiguration.tracing.tracer = nil
let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
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

// Models and completions.
let env = config.environment
let providerSettings = ProviderSettingsStore(base: ProviderSettings.fromEnvironment(env), store: history.chats)
let modelListTimeout = TimeAmount.seconds(Int64(env.int("AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST", default: 10)))
let registry = ModelRegistry(
    bases: BaseModelCache(
        settings: providerSettings, client: httpClient, logger: runtime.logger,
        lifetime: .seconds(env.int("MODELS_CACHE_TTL", default: 1)), timeout: modelListTimeout),
    store: CustomModelStore(postgres: runtime.postgres, logger: runtime.logger), adminBypass: adminBypass,
    modelBypass: env.bool("BYPASS_MODEL_ACCESS_CONTROL", default: false))
let usageRecorder = UsageRecorder(postgres: runtime.postgres, logger: runtime.logger)
let providerRelay = ProviderRelay(
    client: httpClient, usage: usageRecorder, logger: runtime.logger,
    timeout: env.string("AIOHTTP_CLIENT_TIMEOUT").flatMap { Int64($0) }.map { TimeAmount.seconds($0) })
let rag = RAG(
    client: httpClient, baseURL: env.string("SKIFF_RETRIEVAL_URL", default: "http://127.0.0.1:8084"),
    internalSecret: config.internalSecret)
let chatTasks = ChatTasks(
    history: history, relay: providerRelay, registry: registry, rag: rag,
    images: ImageInliner(
        client: httpClient, baseURL: env.string("SKIFF_FILES_URL", default: "http://127.0.0.1:8083"),
        internalSecret: config.internalSecret),
    redis: runtime.redis, logger: runtime.logger,
    taskModel: env.string("TASK_MODEL"), taskModelExternal: env.string("TASK_MODEL_EXTERNAL"))
let modelsController = ModelsController(registry: registry, policies: policies, owners: OwnerLookup(auth: auth))
router.addRoutes(modelsController.listRoutes, atPath: "/api/models")
router.addRoutes(modelsController.routes, atPath: "/api/v1/models")
let completions = CompletionsController(
    registry: registry, settings: providerSettings, relay: providerRelay, tasks: chatTasks, rag: rag)
router.addRoutes(completions.routes, atPath: "/api/chat")
router.addRoutes(completions.routes, atPath: "/api/v1/chat")
router.addRoutes(completions.routes, atPath: "/api/openai/v1/chat")
let providerRoutes = ProviderRoutes(settings: providerSettings, registry: registry, relay: providerRelay, verifyTimeout: modelListTimeout)
router.addRoutes(providerRoutes.openAIRoutes, atPath: "/openai")
router.addRoutes(providerRoutes.ollamaRoutes, atPath: "/ollama")
let taskRoutes = TaskRoutes(tasks: chatTasks, history: history)
router.addRoutes(taskRoutes.routes, atPath: "/api/tasks")
// Channels are not built yet: the list the web app's sidebar asks for is empty.
router.get("/api/v1/channels") { _, context -> Response in
    _ = try context.requireVerified()
    return JSONResponse.text("[]")
}
let taskStops = try RedisSubscriber(
    address: RedisAddress(url: config.redisURL), channels: [ChatTasks.stopChannel], logger: runtime.logger
) { message in
    chatTasks.cancelLocal(message.payload)
}

let relay = OutboxRelay(outbox: history.outbox, postgres: runtime.postgres, redis: runtime.redis, logger: runtime.logger)
// A deleted user's chats, folders, tags and shares go too; the consumer group makes sure one replica does it
// even if the one that read the event died first.
let accountEvents = StreamConsumer(
    redis: try RedisClient(url: config.redisURL), stream: EventStream.auth, group: "chat", logger: runtime.logger
) { event in
    guard event.type == "user.deleted", let userID = event.data["user_id"]?.stringValue else { return }
    try await history.chats.deleteUserData(userID: userID)
    try await registry.store.deleteUserData(userID: userID)
}
let app = runtime.makeApplication(
    router: router, schema: "chat",
    migrations: Bundle.module.url(forResource: "Migrations", withExtension: nil)!,
    services: [relay, accountEvents, usageRecorder, taskStops, ChatTasks.Shutdown(tasks: chatTasks)])
try await app.runUntilStopped()
try await httpClient.shutdown().get()
