// The files service: uploads and their bytes (a local directory every replica shares), with the real server's
// `/api/v1/files` routes. Text extraction happens in retrieval, which answers `file.uploaded` with `file.processed`.
import AsyncHTTPClient
import Foundation
import Hummingbird
import Shared

let config = ServiceConfig(defaultPort: 8083)
let runtime = try ServiceRuntime(name: "files", config: config)
let env = config.environment
// `UPLOAD_DIR`: where the bytes go (Open WebUI always uses DATA_DIR/uploads; Skiff lets it be set).
let uploads = URL(
    fileURLWithPath: env.string("UPLOAD_DIR") ?? (env.string("DATA_DIR", default: "data") + "/uploads"), isDirectory: true)
try FileManager.default.createDirectory(at: uploads, withIntermediateDirectories: true)
let store = FileStore(postgres: runtime.postgres, logger: runtime.logger, uploadDirectory: uploads)

let router = runtime.makeRouter()
let httpClient = HTTPClient(eventLoopGroupProvider: .singleton)
let files = FilesController(
    store: store,
    access: KnowledgeAccess(
        client: httpClient, baseURL: env.string("SKIFF_RETRIEVAL_URL", default: "http://127.0.0.1:8084"),
        internalSecret: config.internalSecret,
        auth: AuthLookup(
            client: httpClient, baseURL: env.string("SKIFF_AUTH_URL", default: "http://127.0.0.1:8081"),
            internalSecret: config.internalSecret)), maxSize: env.string("RAG_FILE_MAX_SIZE").flatMap { Int($0) },
    allowedExtensions: (env.string("RAG_ALLOWED_FILE_EXTENSIONS") ?? "").split(separator: ",")
        .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty },
    adminBypass: env.bool(
        "BYPASS_ADMIN_ACCESS_CONTROL", default: env.bool("ENABLE_ADMIN_WORKSPACE_CONTENT_ACCESS", default: true)))
router.addRoutes(files.routes, atPath: "/api/v1/files")

let relay = OutboxRelay(outbox: store.outbox, postgres: runtime.postgres, redis: runtime.redis, logger: runtime.logger)
// Retrieval's verdict on a file: its status, extracted text and the text's hash.
let processed = StreamConsumer(
    redis: try RedisClient(url: config.redisURL), stream: EventStream.retrieval, group: "files", logger: runtime.logger
) { event in
    guard event.type == "file.processed", let id = event.data["file_id"]?.stringValue else { return }
    var changes: [String: JSONValue] = ["status": event.data["status"] ?? .string("failed"), "error": event.data["error"] ?? .null]
    if let content = event.data["content"], content != .null { changes["content"] = content }
    try await store.updateData(id, changes, hash: .some(event.data["hash"]?.stringValue))
}
// A deleted user's files and bytes go too.
let accounts = StreamConsumer(
    redis: try RedisClient(url: config.redisURL), stream: EventStream.auth, group: "files", logger: runtime.logger
) { event in
    guard event.type == "user.deleted", let userID = event.data["user_id"]?.stringValue else { return }
    try await store.delete(try await store.rows("SELECT \(unescaped: FileStore.columns(withContent: false)) FROM files.files WHERE user_id = \(userID)"), actor: nil)
}
let app = runtime.makeApplication(
    router: router, schema: "files",
    migrations: Bundle.module.url(forResource: "Migrations", withExtension: nil)!,
    services: [relay, processed, accounts])
try await app.runUntilStopped()
try await httpClient.shutdown().get()
