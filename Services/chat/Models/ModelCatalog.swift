// The models a user may talk to: the providers' models (fetched from each connection, cached briefly, refreshed
// when connections change) with the custom models laid over them, filtered by access as the real server does.
import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Shared

/// One provider model, as `/api/models/base` lists it, and where requests for it go.
struct BaseModel: Sendable {
    enum Source: Sendable {
        case openAI(index: Int)
        case ollama(indexes: [Int])
    }

    var id: String
    var name: String
    var source: Source
    var entry: OrderedObject
    var connectionType: JSONValue
    var provider: String

    var ownedBy: String {
        if case .ollama = source { return "ollama" }
        return "openai"
    }
}

/// Fetches and caches the providers' models.
actor BaseModelCache {
    let settings: ProviderSettingsStore
    let client: HTTPClient
    let logger: Logger
    /// `MODELS_CACHE_TTL`: seconds a fetched list is served before it is fetched again (in the background).
    let lifetime: Duration
    /// `AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST`: how long one connection may take to list its models.
    let timeout: TimeAmount
    private var cached: (generation: Int, fetched: ContinuousClock.Instant, models: [BaseModel])?
    private var inflight: (generation: Int, task: Task<[BaseModel], Never>)?
    /// Fetches are numbered; an older one finishing late never replaces a newer one's list.
    private var started = 0
    private var stored = 0

    init(settings: ProviderSettingsStore, client: HTTPClient, logger: Logger, lifetime: Duration, timeout: TimeAmount) {
        self.settings = settings
        self.client = client
        self.logger = logger
        self.lifetime = lifetime
        self.timeout = timeout
    }

    /// The current list: fresh when asked to `refresh` or when connections changed; otherwise a recent one,
    /// refreshed in the background once it is older than the lifetime.
    func models(refresh: Bool = false) async throws -> [BaseModel] {
        let current = try await settings.current()
        let generation = settings.generation.current
        if !refresh, let cached, cached.generation == generation {
            if ContinuousClock.now - cached.fetched >= lifetime { _ = start(current, generation: generation) }
            return cached.models
        }
        return await start(current, generation: generation, force: refresh).value
    }

    func invalidate() {
        cached = nil
    }

    private func start(_ current: ProviderSettings, generation: Int, force: Bool = false) -> Task<[BaseModel], Never> {
        if !force, let inflight, inflight.generation == generation { return inflight.task }
        started += 1
        let number = started
        let task = Task { [client, logger, timeout] in
            await Self.fetch(current, client: client, logger: logger, timeout: timeout)
        }
        inflight = (generation, task)
        Task {
            let models = await task.value
            self.finish(generation: generation, number: number, models: models, task: task)
        }
        return task
    }

    /// Keeps a fetch's list, unless a newer fetch already stored one; an empty list (every provider failed)
    /// keeps the previous list of the same connections, as the original does.
    private func finish(generation: Int, number: Int, models: [BaseModel], task: Task<[BaseModel], Never>) {
        if inflight?.task == task { inflight = nil }
        guard number > stored, (cached?.generation ?? generation) <= generation else { return }
        stored = number
        if models.isEmpty, let cached, cached.generation == generation, !cached.models.isEmpty {
            self.cached = (generation, ContinuousClock.now, cached.models)
            return
        }
        cached = (generation, ContinuousClock.now, models)
    }

    /// Every enabled connection's models, fetched in parallel; a connection that fails adds none.
    static func fetch(_ settings: ProviderSettings, client: HTTPClient, logger: Logger, timeout: TimeAmount) async -> [BaseModel] {
        let openAI = settings.openAI.filter(\.enabled)
        let ollama = settings.ollama.filter(\.enabled)
        return await withTaskGroup(of: (Int, [BaseModel]).self) { group in
            for (position, connection) in openAI.enumerated() {
                group.addTask {
                    (position, await openAIModels(connection, client: client, logger: logger, timeout: timeout))
                }
            }
            for (position, connection) in ollama.enumerated() {
                group.addTask {
                    (openAI.count + position, await ollamaModels(connection, client: client, logger: logger, timeout: timeout))
                }
            }
            var lists: [Int: [BaseModel]] = [:]
            for await (position, models) in group { lists[position] = models }
            var seen: Set<String> = []
            var merged: [BaseModel] = []
            var ollamaByID: [String: Int] = [:]
            for position in lists.keys.sorted() {
                for model in lists[position]! {
                    if case .ollama(let indexes) = model.source, let at = ollamaByID[model.id],
                        case .ollama(let known) = merged[at].source
                    {
                        // The same Ollama model on several connections: one entry listing them all.
                        let all = known + indexes.filter { !known.contains($0) }
                        merged[at].source = .ollama(indexes: all)
                        var ollamaEntry = OrderedObject(merged[at].entry["ollama"]?.objectValue ?? [:], first: [])
                        ollamaEntry["urls"] = .array(all.map(JSONValue.int))
                        merged[at].entry["ollama"] = ollamaEntry.value
                        continue
                    }
                    guard seen.insert(model.id).inserted else { continue }
                    if case .ollama = model.source { ollamaByID[model.id] = merged.count }
                    merged.append(model)
                }
            }
            return merged
        }
    }

    static func getJSON(_ url: String, authorization: String?, client: HTTPClient, timeout: TimeAmount) async throws -> JSONValue? {
        var request = HTTPClientRequest(url: url)
        if let authorization { request.headers.add(name: "Authorization", value: authorization) }
        let (response, body) = try await fetch(request, client: client, timeout: timeout)
        guard response.status == .ok else { return nil }
        return try? JSONDecoder().decode(JSONValue.self, from: body)
    }

    /// A whole answer (head and body) within `timeout`; the client's own timeout stops at the head.
    static func fetch(_ request: HTTPClientRequest, client: HTTPClient, timeout: TimeAmount, limit: Int = 32 << 20) async throws
        -> (HTTPClientResponse, ByteBuffer)
    {
        try await withDeadline(.nanoseconds(timeout.nanoseconds)) {
            let response = try await client.execute(request, timeout: timeout)
            return (response, try await response.body.collect(upTo: limit))
        }
    }
}

extension BaseModelCache {

    static let openAISkipped = ["babbage", "dall-e", "davinci", "embedding", "tts", "whisper"]

    static func openAIModels(_ connection: OpenAIConnection, client: HTTPClient, logger: Logger, timeout: TimeAmount) async
        -> [BaseModel]
    {
        var raw: [JSONValue]
        if let ids = connection.config["model_ids"]?.arrayValue?.compactMap(\.stringValue), !ids.isEmpty {
            raw = ids.map { .object(["id": .string($0), "name": .string($0), "owned_by": .string("openai"), "object": .string("model")]) }
        } else {
            do {
                let listed = try await getJSON(
                    connection.url + "/models", authorization: connection.authorization, client: client, timeout: timeout)
                raw = listed?["data"]?.arrayValue ?? listed?.arrayValue ?? []
            } catch {
                logger.info("model list failed", metadata: ["connection": "\(connection.index)", "error": "\(error)"])
                raw = []
            }
        }
        let isOpenAI = URL(string: connection.url)?.host == "api.openai.com"
        let tags = connection.config["tags"]?.arrayValue ?? []
        let connectionType = connection.config["connection_type"]?.stringValue ?? "external"
        let provider = connection.config["provider"]?.stringValue ?? ""
        return raw.compactMap { item -> BaseModel? in
            guard var object = item.objectValue, let upstreamID = object["id"]?.stringValue ?? object["name"]?.stringValue else {
                return nil
            }
            if isOpenAI, openAISkipped.contains(where: upstreamID.contains) { return nil }
            if object["name"] == .null { object["name"] = nil }
            var id = upstreamID
            if let prefix = connection.prefixID {
                id = prefix + "." + upstreamID
                object["id"] = .string(id)
                if let name = object["name"]?.stringValue, !name.isEmpty { object["name"] = .string(prefix + "." + name) }
            }
            if !tags.isEmpty { object["tags"] = .array(tags) }
            object["connection_type"] = .string(connectionType)
            if !provider.isEmpty { object["provider"] = .string(provider) }
            let upstream = OrderedObject(object, first: ["id", "object", "created", "owned_by", "connection_type"])
            var entry = upstream
            entry["owned_by"] = .string("openai")
            let name = object["name"]?.stringValue ?? id
            entry["name"] = .string(name)
            entry.set("openai", ordered: upstream)
            entry["provider"] = .string(provider)
            entry["urlIdx"] = .int(connection.index)
            return BaseModel(
                id: id, name: name, source: .openAI(index: connection.index), entry: entry,
                connectionType: .string(connectionType), provider: provider)
        }
    }

    static func ollamaModels(_ connection: OllamaConnection, client: HTTPClient, logger: Logger, timeout: TimeAmount) async
        -> [BaseModel]
    {
        let listed: JSONValue?
        do {
            listed = try await getJSON(
                connection.url + "/api/tags", authorization: connection.authorization, client: client, timeout: timeout)
        } catch {
            logger.info("ollama model list failed", metadata: ["connection": "\(connection.index)", "error": "\(error)"])
            return []
        }
        let filter = connection.config["model_ids"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let tags = connection.config["tags"]?.arrayValue ?? []
        let connectionType = connection.config["connection_type"]?.stringValue ?? "local"
        return (listed?["models"]?.arrayValue ?? []).compactMap { item -> BaseModel? in
            guard var object = item.objectValue, let model = object["model"]?.stringValue ?? object["name"]?.stringValue
            else { return nil }
            if !filter.isEmpty, !filter.contains(model) { return nil }
            var id = model
            if let prefix = connection.prefixID {
                id = prefix + "." + model
                object["model"] = .string(id)
                if let name = object["name"]?.stringValue { object["name"] = .string(prefix + "." + name) }
            }
            if !tags.isEmpty { object["tags"] = .array(tags) }
            object["connection_type"] = .string(connectionType)
            object["urls"] = .array([.int(connection.index)])
            let name = object["name"]?.stringValue ?? id
            let entry = OrderedObject([
                ("id", .string(id)), ("name", .string(name)), ("object", .string("model")), ("created", .int(0)),
                ("owned_by", .string("ollama")),
                ("ollama", OrderedObject(object, first: ["name", "model", "modified_at", "size", "digest", "details"]).value),
                ("loaded", .bool(object["expires_at"] != nil)), ("connection_type", .string(connectionType)),
                ("tags", .array(tags)),
            ])
            return BaseModel(
                id: id, name: name, source: .ollama(indexes: [connection.index]), entry: entry,
                connectionType: .string(connectionType), provider: "")
        }
    }
}
