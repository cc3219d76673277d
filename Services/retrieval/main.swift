// The retrieval service: documents cut into chunks (Postgres with pgvector and full text), knowledge bases and
// search over them. It processes what the files service uploads (`file.uploaded` → `file.processed`).
import AsyncHTTPClient
import Foundation
import Hummingbird
import PostgresNIO
import Shared

let config = ServiceConfig(defaultPort: 8084)
let runtime = try ServiceRuntime(name: "retrieval", config: config)
let env = config.environment
let httpClient = HTTPClient(eventLoopGroupProvider: .singleton)
let uploads = URL(
    fileURLWithPath: env.string("UPLOAD_DIR") ?? (env.string("DATA_DIR", default: "data") + "/uploads"), isDirectory: true)
let settings = SettingsStore(
    base: RetrievalSettings.fromEnvironment(env), postgres: runtime.postgres, client: httpClient, logger: runtime.logger)
let chunks = ChunkStore(postgres: runtime.postgres, logger: runtime.logger, settings: settings)
let knowledge = KnowledgeStore(postgres: runtime.postgres, logger: runtime.logger)
let indexer = Indexer(
    postgres: runtime.postgres, chunks: chunks, knowledge: knowledge, logger: runtime.logger, uploads: uploads)
let auth = AuthLookup(
    client: httpClient, baseURL: env.string("SKIFF_AUTH_URL", default: "http://127.0.0.1:8081"), internalSecret: config.internalSecret)

let router = runtime.makeRouter()
router.addRoutes(
    KnowledgeController(
        store: knowledge, indexer: indexer, auth: auth,
        adminBypass: env.bool("BYPASS_ADMIN_ACCESS_CONTROL", default: env.bool("ENABLE_ADMIN_WORKSPACE_CONTENT_ACCESS", default: true))
    ).routes, atPath: "/api/v1/knowledge")
let retrieval = RetrievalController(knowledge: knowledge, chunks: chunks, indexer: indexer)
router.addRoutes(retrieval.routes, atPath: "/api/v1/retrieval")
router.addRoutes(SettingsController(store: settings).routes, atPath: "/api/v1/retrieval")
router.addRoutes(retrieval.internalRoutes, atPath: "/internal/retrieval")

let relay = OutboxRelay(outbox: indexer.outbox, postgres: runtime.postgres, redis: runtime.redis, logger: runtime.logger)
// `SKIFF_EVENT_RECLAIM_AFTER`: seconds before another replica takes over an event a dead one left unfinished.
let fileEvents = StreamConsumer(
    redis: try RedisClient(url: config.redisURL), stream: EventStream.files, group: "retrieval", logger: runtime.logger,
    reclaimAfter: .seconds(env.int("SKIFF_EVENT_RECLAIM_AFTER", default: 30)),
    // Files are processed eight at a time; one file's events stay in order.
    concurrency: env.int("SKIFF_PROCESSING_CONCURRENCY", default: 8), key: { $0.data["file_id"]?.stringValue }
) { event in
    try await indexer.handle(event)
}
let accountEvents = StreamConsumer(
    redis: try RedisClient(url: config.redisURL), stream: EventStream.auth, group: "retrieval", logger: runtime.logger
) { event in
    guard event.type == "user.deleted", let userID = event.data["user_id"]?.stringValue else { return }
    try await knowledge.delete(ownerID: userID)
}
let app = runtime.makeApplication(
    router: router, schema: "retrieval",
    migrations: Bundle.module.url(forResource: "Migrations", withExtension: nil)!,
    services: [relay, fileEvents, accountEvents])
try await app.runUntilStopped()
try await httpClient.shutdown().get()
