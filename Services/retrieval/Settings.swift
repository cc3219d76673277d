// The retrieval settings: chunking, how many chunks a query returns, the relevance threshold and the embedding
// engine. The environment gives them (Open WebUI's names) until an admin saves them; every replica re-reads the
// saved ones every two seconds.
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Shared

struct RetrievalSettings: Sendable {
    var topK: Int
    var relevanceThreshold: Double
    var chunkSize: Int
    var chunkOverlap: Int
    var engine: String
    var model: String
    var batchSize: Int
    var openAIURL: String
    var openAIKey: String
    var ollamaURL: String
    var ollamaKey: String

    static func fromEnvironment(_ env: Shared.Environment) -> RetrievalSettings {
        let engine = env.string("RAG_EMBEDDING_ENGINE", default: "").lowercased()
        return RetrievalSettings(
            topK: env.int("RAG_TOP_K", default: 3),
            relevanceThreshold: Double(env.string("RAG_RELEVANCE_THRESHOLD", default: "0")) ?? 0,
            chunkSize: env.int("CHUNK_SIZE", default: 1000), chunkOverlap: env.int("CHUNK_OVERLAP", default: 100),
            engine: engine,
            model: env.string(
                "RAG_EMBEDDING_MODEL",
                default: engine == "ollama" ? "nomic-embed-text" : engine == "openai" ? "text-embedding-3-small" : "sentence-transformers/all-MiniLM-L6-v2"),
            batchSize: max(1, env.int("RAG_EMBEDDING_BATCH_SIZE", default: 1)),
            openAIURL: env.string("RAG_OPENAI_API_BASE_URL", default: env.string("OPENAI_API_BASE_URL", default: "https://api.openai.com/v1")),
            openAIKey: env.string("RAG_OPENAI_API_KEY", default: env.string("OPENAI_API_KEY", default: "")),
            ollamaURL: env.string("RAG_OLLAMA_BASE_URL", default: env.string("OLLAMA_BASE_URL", default: "http://localhost:11434")),
            ollamaKey: env.string("RAG_OLLAMA_API_KEY", default: ""))
    }

    /// The embedder these settings name (nil: none, search is full text alone).
    func embedder(client: HTTPClient, logger: Logger) -> Embedder? {
        var values = [
            "RAG_EMBEDDING_ENGINE": engine, "RAG_EMBEDDING_MODEL": model, "RAG_EMBEDDING_BATCH_SIZE": String(batchSize),
            "RAG_OPENAI_API_BASE_URL": openAIURL, "RAG_OPENAI_API_KEY": openAIKey, "RAG_OLLAMA_BASE_URL": ollamaURL,
        ]
        if engine.isEmpty { values["RAG_EMBEDDING_ENGINE"] = nil }
        return Embedder.configured(Shared.Environment(values), client: client, logger: logger)
    }

    var configJSON: String {
        OrderedJSON.object([
            ("status", .bool(true)), ("RAG_TEMPLATE", .string("")), ("TOP_K", .int(topK)),
            ("BYPASS_EMBEDDING_AND_RETRIEVAL", .bool(false)), ("RAG_FULL_CONTEXT", .bool(false)),
            ("ENABLE_RAG_HYBRID_SEARCH", .bool(!engine.isEmpty)), ("TOP_K_RERANKER", .int(topK)),
            ("RELEVANCE_THRESHOLD", .double(relevanceThreshold)), ("HYBRID_BM25_WEIGHT", .double(0.5)),
            ("CONTENT_EXTRACTION_ENGINE", .string("")), ("PDF_EXTRACT_IMAGES", .bool(false)), ("TEXT_SPLITTER", .string("")),
            ("ENABLE_MARKDOWN_HEADER_TEXT_SPLITTER", .bool(true)), ("CHUNK_SIZE", .int(chunkSize)),
            ("CHUNK_MIN_SIZE_TARGET", .int(0)), ("CHUNK_OVERLAP", .int(chunkOverlap)),
        ])
    }

    var embeddingJSON: String {
        OrderedJSON.object([
            ("status", .bool(true)), ("RAG_EMBEDDING_ENGINE", .string(engine)), ("RAG_EMBEDDING_MODEL", .string(model)),
            ("RAG_EMBEDDING_BATCH_SIZE", .int(batchSize)), ("ENABLE_ASYNC_EMBEDDING", .bool(true)),
            ("RAG_EMBEDDING_CONCURRENT_REQUESTS", .int(0)),
            ("openai_config", .object(["url": .string(openAIURL), "key": .string(openAIKey)])),
            ("ollama_config", .object(["url": .string(ollamaURL), "key": .string(ollamaKey)])),
            ("azure_openai_config", .object(["url": .string(""), "key": .string(""), "version": .string("")])),
        ])
    }

    /// Saved values over these.
    mutating func apply(_ saved: [String: JSONValue]) {
        if let value = saved["TOP_K"]?.intValue { topK = value }
        if let value = saved["RELEVANCE_THRESHOLD"]?.doubleValue { relevanceThreshold = value }
        if let value = saved["CHUNK_SIZE"]?.intValue { chunkSize = value }
        if let value = saved["CHUNK_OVERLAP"]?.intValue { chunkOverlap = value }
        if let value = saved["RAG_EMBEDDING_ENGINE"]?.stringValue { engine = value }
        if let value = saved["RAG_EMBEDDING_MODEL"]?.stringValue { model = value }
        if let value = saved["RAG_EMBEDDING_BATCH_SIZE"]?.intValue { batchSize = max(1, value) }
        if let value = saved["openai_config"]?["url"]?.stringValue { openAIURL = value }
        if let value = saved["openai_config"]?["key"]?.stringValue { openAIKey = value }
        if let value = saved["ollama_config"]?["url"]?.stringValue { ollamaURL = value }
        if let value = saved["ollama_config"]?["key"]?.stringValue { ollamaKey = value }
    }
}

/// The current settings and the embedder they name.
final class SettingsStore: Sendable {
    let base: RetrievalSettings
    let postgres: PostgresClient
    let client: HTTPClient
    let logger: Logger
    private let cached = NIOLockedValueBox<(RetrievalSettings, Embedder?, ContinuousClock.Instant)?>(nil)

    init(base: RetrievalSettings, postgres: PostgresClient, client: HTTPClient, logger: Logger) {
        self.base = base
        self.postgres = postgres
        self.client = client
        self.logger = logger
    }

    func current() async throws -> (settings: RetrievalSettings, embedder: Embedder?) {
        if let (settings, embedder, loaded) = cached.withLockedValue({ $0 }), ContinuousClock.now - loaded < .seconds(2) {
            return (settings, embedder)
        }
        var settings = base
        for try await text in try await postgres.query(
            "SELECT value::text FROM retrieval.settings WHERE key = 'config'", logger: logger
        ).decode(String.self) { settings.apply(JSONValue.parse(text)?.objectValue ?? [:]) }
        let embedder = settings.embedder(client: client, logger: logger)
        cached.withLockedValue { $0 = (settings, embedder, ContinuousClock.now) }
        return (settings, embedder)
    }

    /// Saves `changes` over what was saved before.
    func save(_ changes: [String: JSONValue]) async throws {
        try await postgres.query(
            """
            INSERT INTO retrieval.settings (key, value) VALUES ('config', \(JSONValue.object(changes).jsonText)::jsonb)
            ON CONFLICT (key) DO UPDATE SET value = retrieval.settings.value || EXCLUDED.value
            """, logger: logger)
        cached.withLockedValue { $0 = nil }
    }
}

/// `/api/v1/retrieval/config` and `/embedding` (admins).
struct SettingsController {
    let store: SettingsStore

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("config", use: config)
        routes.post("config/update", use: updateConfig)
        routes.get("embedding", use: embedding)
        routes.post("embedding/update", use: updateEmbedding)
        return routes
    }

    @Sendable func config(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        return JSONResponse.text(try await store.current().settings.configJSON)
    }

    static func body(_ request: Request) async throws -> [String: JSONValue] {
        try await JSONBody.object(request)
    }

    static func invalid(_ key: String, _ value: JSONValue, _ type: String, _ message: String) -> APIError {
        APIError.validation([ValidationIssue(type: type, loc: [.string("body"), .string(key)], msg: message, input: value)])
    }

    @Sendable func updateConfig(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let body = try await Self.body(request)
        var changes: [String: JSONValue] = [:]
        for key in ["TOP_K", "CHUNK_SIZE", "CHUNK_OVERLAP"] {
            guard let value = body[key], value != .null else { continue }
            guard let number = value.intValue, number >= 0 else {
                throw Self.invalid(key, value, "int_type", "Input should be a valid integer")
            }
            changes[key] = .int(number)
        }
        if let value = body["RELEVANCE_THRESHOLD"], value != .null {
            guard let number = value.doubleValue else { throw Self.invalid("RELEVANCE_THRESHOLD", value, "float_type", "Input should be a valid number") }
            changes["RELEVANCE_THRESHOLD"] = .double(number)
        }
        if (changes["CHUNK_SIZE"]?.intValue ?? 1) < 1 { throw APIError(.badRequest, "CHUNK_SIZE must be at least 1") }
        try await store.save(changes)
        return JSONResponse.text(try await store.current().settings.configJSON)
    }

    @Sendable func embedding(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        return JSONResponse.text(try await store.current().settings.embeddingJSON)
    }

    @Sendable func updateEmbedding(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let body = try await Self.body(request)
        guard let engine = body["RAG_EMBEDDING_ENGINE"]?.stringValue else {
            throw APIError.validation([
                ValidationIssue(type: "missing", loc: [.string("body"), .string("RAG_EMBEDDING_ENGINE")], msg: "Field required", input: .object(body))
            ])
        }
        guard let model = body["RAG_EMBEDDING_MODEL"]?.stringValue else {
            throw APIError.validation([
                ValidationIssue(type: "missing", loc: [.string("body"), .string("RAG_EMBEDDING_MODEL")], msg: "Field required", input: .object(body))
            ])
        }
        guard ["", "openai", "ollama"].contains(engine) else {
            throw APIError(.badRequest, "Skiff embeds with openai or ollama engines (or none)")
        }
        var changes: [String: JSONValue] = [
            "RAG_EMBEDDING_ENGINE": .string(engine), "RAG_EMBEDDING_MODEL": .string(model.trimmingCharacters(in: .whitespaces)),
        ]
        if let batch = body["RAG_EMBEDDING_BATCH_SIZE"]?.intValue { changes["RAG_EMBEDDING_BATCH_SIZE"] = .int(batch) }
        if engine == "openai", let config = body["openai_config"] { changes["openai_config"] = config }
        if engine == "ollama", let config = body["ollama_config"] { changes["ollama_config"] = config }
        try await store.save(changes)
        return JSONResponse.text(try await store.current().settings.embeddingJSON)
    }
}
