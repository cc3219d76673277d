// `/openai/*` and `/ollama/*`: the connections' settings for admins, checks of a connection, the providers' own
// model lists, the direct OpenAI-style completion route and Ollama's pull with its progress streamed through;
// and `/api/tasks*`: running background completions, listed and stopped from any replica.
import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOCore
import Shared

struct ProviderRoutes {
    let settings: ProviderSettingsStore
    let registry: ModelRegistry
    let relay: ProviderRelay
    let verifyTimeout: TimeAmount
    var client: HTTPClient { relay.client }

    static let passthroughDisabled = APIError(
        .forbidden, "Direct API passthrough is disabled. Set ENABLE_OPENAI_API_PASSTHROUGH=True to enable.")
    static let ollamaDisabled = APIError(.serviceUnavailable, "The Ollama API is disabled. Please enable it to use this feature.")

    var openAIRoutes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("config", use: openAIConfig)
        routes.post("config/update", use: updateOpenAIConfig)
        routes.post("verify", use: verifyOpenAI)
        routes.get("models", use: openAIModels)
        routes.get("models/:index", use: openAIConnectionModels)
        routes.post("chat/completions", use: openAIChat)
        for method in [HTTPRequest.Method.get, .post, .put, .delete] {
            routes.on("**", method: method) { _, context -> Response in
                _ = try context.requireVerified()
                throw Self.passthroughDisabled
            }
        }
        return routes
    }

    var ollamaRoutes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/") { _, _ in JSONResponse.text("{\"status\":true}") }
        routes.get("config", use: ollamaConfig)
        routes.post("config/update", use: updateOllamaConfig)
        routes.post("verify", use: verifyOllama)
        routes.get("api/tags", use: ollamaTags)
        routes.get("api/version", use: ollamaVersion)
        routes.post("api/pull", use: ollamaPull)
        routes.post("api/pull/:index", use: ollamaPull)
        return routes
    }

    // MARK: OpenAI

    @Sendable func openAIConfig(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        return JSONResponse.text(try await settings.current().openAIJSON)
    }

    struct OpenAIConfigForm: Decodable {
        var enable: Bool?
        var urls: [String]
        var keys: [String]
        var configs: [String: JSONValue]

        enum CodingKeys: String, CodingKey {
            case enable = "ENABLE_OPENAI_API"
            case urls = "OPENAI_API_BASE_URLS"
            case keys = "OPENAI_API_KEYS"
            case configs = "OPENAI_API_CONFIGS"
        }
    }

    @Sendable func updateOpenAIConfig(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let form = try await JSONBody.decode(OpenAIConfigForm.self, from: request)
        var current = try await settings.current()
        current.enableOpenAI = form.enable
        current.openAIURLs = form.urls
        current.openAIKeys = ProviderSettings.fitted(form.keys, to: form.urls.count)
        current.openAIConfigs = ProviderSettings.indexed(form.configs, count: form.urls.count)
        try await settings.save(current, openAI: true)
        await registry.bases.invalidate()
        return JSONResponse.text(current.openAIJSON)
    }

    struct VerifyForm: Decodable {
        var url: String
        var key: String?
        var config: [String: JSONValue]?
    }

    @Sendable func verifyOpenAI(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let form = try await JSONBody.decode(VerifyForm.self, from: request)
        let connection = OpenAIConnection(index: 0, url: form.url, key: form.key ?? "", config: form.config ?? [:])
        var outbound = HTTPClientRequest(url: ProviderSettings.trimmingSlash(form.url) + "/models")
        if let authorization = connection.authorization { outbound.headers.add(name: "Authorization", value: authorization) }
        do {
            let (response, body) = try await BaseModelCache.fetch(outbound, client: client, timeout: verifyTimeout)
            let status = HTTPResponse.Status(code: Int(response.status.code))
            if (try? JSONDecoder().decode(JSONValue.self, from: body)) != nil {
                return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
            }
            if status == .ok { return JSONResponse.text(JSONValue.string(String(buffer: body)).jsonText) }
            return Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: body))
        } catch {
            throw ProviderRelay.connectionError
        }
    }

    /// The OpenAI connections' models in the merged shape (users see those with an entry they may read).
    @Sendable func openAIModels(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        guard try await settings.current().enableOpenAI == true else { throw APIError(.serviceUnavailable, "OpenAI API is disabled") }
        let customs = try await registry.store.all()
        let items = try await registry.bases.models().filter { model in
            guard case .openAI = model.source else { return false }
            guard registry.filtered(user) else { return true }
            return customs.first { $0.id == model.id }?.readable(by: user) ?? false
        }.map(\.entry.text)
        return JSONResponse.text("{\"data\":" + OrderedJSON.array(items) + "}")
    }

    @Sendable func openAIConnectionModels(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let current = try await settings.current()
        guard current.enableOpenAI == true else { throw APIError(.serviceUnavailable, "OpenAI API is disabled") }
        guard let index = context.parameters.get("index", as: Int.self), index >= 0, index < current.openAIURLs.count else {
            throw APIError(.notFound, "Connection not found")
        }
        let connection = current.openAI[index]
        var outbound = HTTPClientRequest(url: connection.url + "/models")
        if let authorization = connection.authorization { outbound.headers.add(name: "Authorization", value: authorization) }
        return try await relayOK(outbound)
    }

    /// A provider's JSON answer passed on when it is 200; 500 with the original's texts otherwise.
    func relayOK(_ outbound: HTTPClientRequest) async throws -> Response {
        do {
            let (response, body) = try await BaseModelCache.fetch(outbound, client: client, timeout: verifyTimeout)
            guard response.status == .ok else {
                throw APIError(.internalServerError, "Unexpected error: HTTP Error: \(response.status.code)")
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        } catch let error as APIError {
            throw error
        } catch {
            throw ProviderRelay.connectionError
        }
    }

    /// `/openai/chat/completions`: the OpenAI connection's model called directly (custom model params applied).
    @Sendable func openAIChat(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let current = try await settings.current()
        guard current.enableOpenAI == true else { throw APIError(.serviceUnavailable, "OpenAI API is disabled") }
        let body = try await CompletionsController.object(request)
        let modelID = body["model"]?.stringValue ?? ""
        let custom = try await registry.store.model(modelID)
        if registry.filtered(user) {
            try await registry.checkAccess(custom, user: user, denied: APIError(.forbidden, "Model not found"))
        }
        let targetID = custom?.baseModelID ?? modelID
        guard let base = try await registry.bases.models().first(where: { $0.id == targetID }), case .openAI = base.source else {
            throw APIError(.notFound, "Model '' was not found")
        }
        let entry = ModelEntry(id: modelID, entry: OrderedObject(), base: base, custom: custom)
        let prepared = try ProviderRequest.make(
            body: body, entry: entry, base: base, settings: current, user: user, keeping: Set(body.keys).subtracting(["metadata"]))
        return try await relay.respond(prepared, user: user)
    }

    // MARK: Ollama

    @Sendable func ollamaConfig(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        return JSONResponse.text(try await settings.current().ollamaJSON)
    }

    struct OllamaConfigForm: Decodable {
        var enable: Bool?
        var urls: [String]
        var configs: [String: JSONValue]

        enum CodingKeys: String, CodingKey {
            case enable = "ENABLE_OLLAMA_API"
            case urls = "OLLAMA_BASE_URLS"
            case configs = "OLLAMA_API_CONFIGS"
        }
    }

    @Sendable func updateOllamaConfig(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let form = try await JSONBody.decode(OllamaConfigForm.self, from: request)
        var current = try await settings.current()
        current.enableOllama = form.enable
        current.ollamaURLs = form.urls
        current.ollamaConfigs = ProviderSettings.indexed(form.configs, count: form.urls.count)
        try await settings.save(current, openAI: false)
        await registry.bases.invalidate()
        return JSONResponse.text(current.ollamaJSON)
    }

    @Sendable func verifyOllama(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let form = try await JSONBody.decode(VerifyForm.self, from: request)
        var outbound = HTTPClientRequest(url: ProviderSettings.trimmingSlash(form.url) + "/api/version")
        if let key = form.key, !key.isEmpty { outbound.headers.add(name: "Authorization", value: "Bearer " + key) }
        return try await relayOK(outbound)
    }

    /// The Ollama models of every connection, one entry per model with the connections that have it (`urls`).
    @Sendable func ollamaTags(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        guard try await settings.current().enableOllama == true else { throw Self.ollamaDisabled }
        let customs = try await registry.store.all()
        let items = try await registry.bases.models().compactMap { model -> String? in
            guard case .ollama = model.source, let entry = model.entry["ollama"] else { return nil }
            if registry.filtered(user), !(customs.first { $0.id == model.id }?.readable(by: user) ?? false) { return nil }
            return OrderedObject(entry.objectValue ?? [:], first: ["name", "model", "modified_at", "size", "digest", "details"]).text
        }
        return JSONResponse.text("{\"models\":" + OrderedJSON.array(items) + "}")
    }

    /// The lowest version among the Ollama connections; `{"version": false}` when Ollama is switched off.
    @Sendable func ollamaVersion(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireVerified()
        let current = try await settings.current()
        guard current.enableOllama == true else { return JSONResponse.text("{\"version\":false}") }
        var versions: [String] = []
        for connection in current.ollama where connection.enabled {
            if let value = try? await BaseModelCache.getJSON(
                connection.url + "/api/version", authorization: connection.authorization, client: client, timeout: verifyTimeout),
                let version = value["version"]?.stringValue
            {
                versions.append(version)
            }
        }
        func key(_ version: String) -> [Int] {
            var text = version.hasPrefix("v") ? String(version.dropFirst()) : version
            if let dash = text.firstIndex(of: "-") { text = String(text[..<dash]) }
            return text.split(separator: ".").map { Int($0) ?? 0 }
        }
        guard let lowest = versions.min(by: { key($0).lexicographicallyPrecedes(key($1)) }) else {
            throw APIError(.internalServerError, "WebUI could not connect to Ollama")
        }
        return JSONResponse.text(OrderedJSON.object(["version": .string(lowest)]))
    }

    /// Pulls a model on one connection (the first unless given), its progress lines passed through as they come.
    @Sendable func ollamaPull(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let current = try await settings.current()
        guard current.enableOllama == true else { throw Self.ollamaDisabled }
        var body = try await JSONBody.object(request)
        body["model"] = body["model"] ?? body["name"] ?? .null
        body["insecure"] = .bool(true)
        // A connection index that is not a number is no connection (not the first one).
        let raw = context.parameters.get("index")
        guard let index = raw.map({ Int($0) }) ?? 0, index >= 0, index < current.ollama.count else {
            throw APIError(.notFound, "Connection not found")
        }
        let connection = current.ollama[index]
        var outbound = HTTPClientRequest(url: connection.url + "/api/pull")
        outbound.method = .POST
        outbound.headers.add(name: "Content-Type", value: "application/json")
        if let authorization = connection.authorization { outbound.headers.add(name: "Authorization", value: authorization) }
        outbound.body = .bytes(ByteBuffer(string: JSONValue.object(body).jsonText))
        let response: HTTPClientResponse
        do {
            response = try await client.execute(outbound, timeout: relay.timeout ?? .hours(6))
        } catch {
            throw APIError(.internalServerError, "Ollama: \(error)")
        }
        guard response.status.code < 400 else {
            let data = try await relay.collect(response)
            throw APIError(
                HTTPResponse.Status(code: Int(response.status.code)),
                detail: (try? JSONDecoder().decode(JSONValue.self, from: data))?["error"] ?? .string(ProviderRelay.connectionError.detail.stringValue ?? ""))
        }
        return Response(
            status: .ok, headers: [.contentType: response.headers.first(name: "content-type") ?? "application/x-ndjson"],
            body: ResponseBody(asyncSequence: response.body))
    }
}

/// `/api/tasks*`.
struct TaskRoutes {
    let tasks: ChatTasks
    let history: ChatHistory

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: list)
        routes.post("stop/:id", use: stop)
        routes.get("chat/:id", use: chatTasks)
        routes.post("chat/:id/stop", use: stopChat)
        routes.get(":id/events", use: events)
        return routes
    }

    @Sendable func list(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let ids = try await tasks.taskIDs(chatID: nil)
        return JSONResponse.text(OrderedJSON.object(["tasks": .array(ids.map(JSONValue.string))]))
    }

    static func stopped(_ id: String) -> Response {
        JSONResponse.text(OrderedJSON.object([("status", .bool(true)), ("message", .string("Task \(id) stopped."))]))
    }

    @Sendable func stop(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let id = try context.parameters.require("id")
        try await tasks.stop(id)
        return Self.stopped(id)
    }

    @Sendable func chatTasks(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let chatID = try context.parameters.require("id")
        guard try await history.chats.owner(of: chatID) == user.userID else { return JSONResponse.text("{\"task_ids\":[]}") }
        let ids = try await tasks.taskIDs(chatID: chatID)
        return JSONResponse.text(OrderedJSON.object(["task_ids": .array(ids.map(JSONValue.string))]))
    }

    @Sendable func stopChat(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let chatID = try context.parameters.require("id")
        guard try await history.chats.owner(of: chatID) == user.userID else { throw APIError.notFound }
        let ids = try await tasks.taskIDs(chatID: chatID)
        for id in ids { try await tasks.stop(id) }
        guard let last = ids.last else {
            return JSONResponse.text(OrderedJSON.object([("status", .bool(true)), ("message", .string("No tasks found."))]))
        }
        return Self.stopped(last)
    }

    /// Beyond the original: a task's events after stream id `after` (all when absent), so a client that lost its
    /// socket catches up; `done` once the task has ended. The task's owner only.
    @Sendable func events(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let after = request.queryValue("after")
        if let after, after.range(of: #"^[0-9]+(-[0-9]+)?$"#, options: .regularExpression) == nil {
            throw APIError(.badRequest, "after must be an event id (as `id` in an earlier answer)")
        }
        let info = try await tasks.info(id)
        let key = ChatTasks.eventsKey(id)
        let entries = try await tasks.redis.send(["XRANGE", key, after.map { "(" + $0 } ?? "-", "+", "COUNT", "5000"])
            .array ?? []
        var items: [String] = []
        for entry in entries {
            guard let parts = entry.array, parts.count == 2, let streamID = parts[0].string, let fields = parts[1].array,
                fields.count == 2, let event = fields[1].string, let value = JSONValue.parse(event)
            else { continue }
            if info == nil, items.isEmpty, value["chat_id"]?.stringValue.map({ _ in true }) == true {
                // A finished task: only its chat's owner may read what is left of it.
                guard let chatID = value["chat_id"]?.stringValue, try await history.chats.owner(of: chatID) == user.userID else {
                    throw APIError.notFound
                }
            }
            items.append(OrderedJSON.object([("id", .string(streamID))]).dropLast() + ",\"event\":" + event + "}")
        }
        if let info, info["user_id"]?.stringValue != user.userID { throw APIError.notFound }
        if info == nil, items.isEmpty { throw APIError.notFound }
        return JSONResponse.text("{\"events\":" + OrderedJSON.array(items) + ",\"done\":" + (info == nil ? "true" : "false") + "}")
    }
}
