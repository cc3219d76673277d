// The less common chat routes: the admin's chat settings, context compaction and forking a branch.
import Foundation
import Hummingbird
import PostgresNIO
import Shared

extension ChatsController {
    var extraRoutes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("config", use: config)
        routes.post("config", use: updateConfig)
        routes.post(":id/compact", use: compact)
        routes.post(":id/fork", use: fork)
        return routes
    }

    struct ConfigForm: Decodable {
        var model: String?
        var enable: Bool
        var threshold: Int?
        var cap: Int?
        var retention: Int?
        var template: String
        var toolPermissions: Bool?
        var toolSearch: Bool?
        var deferThreshold: Int?
        var alwaysLoaded: [String]?
        var deferBuiltin: Bool?
        enum CodingKeys: String, CodingKey {
            case model = "CONTEXT_COMPACTION_MODEL"
            case enable = "ENABLE_CONTEXT_COMPACTION"
            case threshold = "CONTEXT_COMPACTION_TOKEN_THRESHOLD"
            case cap = "CONTEXT_COMPACTION_TOKEN_CAP"
            case retention = "CONTEXT_COMPACTION_RETENTION_PERCENTAGE"
            case template = "CONTEXT_COMPACTION_PROMPT_TEMPLATE"
            case toolPermissions = "ENABLE_TOOL_PERMISSIONS"
            case toolSearch = "ENABLE_TOOL_SEARCH"
            case deferThreshold = "TOOL_SEARCH_DEFER_THRESHOLD"
            case alwaysLoaded = "TOOL_SEARCH_ALWAYS_LOADED"
            case deferBuiltin = "TOOL_SEARCH_DEFER_BUILTIN_TOOLS"
        }
    }

    static let defaultThreshold = 80_000

    /// The settings in the real server's field order, defaults filled in.
    static func configJSON(_ stored: [String: JSONValue]) -> String {
        func value(_ key: String, _ fallback: JSONValue) -> JSONValue { stored[key] ?? fallback }
        return OrderedJSON.object([
            "CONTEXT_COMPACTION_MODEL": value("CONTEXT_COMPACTION_MODEL", .string("")),
            "ENABLE_CONTEXT_COMPACTION": value("ENABLE_CONTEXT_COMPACTION", .bool(false)),
            "CONTEXT_COMPACTION_TOKEN_THRESHOLD": value("CONTEXT_COMPACTION_TOKEN_THRESHOLD", .int(defaultThreshold)),
            "CONTEXT_COMPACTION_TOKEN_CAP": value("CONTEXT_COMPACTION_TOKEN_CAP", .int(defaultThreshold)),
            "CONTEXT_COMPACTION_RETENTION_PERCENTAGE": value("CONTEXT_COMPACTION_RETENTION_PERCENTAGE", .int(40)),
            "CONTEXT_COMPACTION_PROMPT_TEMPLATE": value("CONTEXT_COMPACTION_PROMPT_TEMPLATE", .string("")),
            "ENABLE_TOOL_PERMISSIONS": value("ENABLE_TOOL_PERMISSIONS", .bool(false)),
            "ENABLE_TOOL_SEARCH": value("ENABLE_TOOL_SEARCH", .bool(false)),
            "TOOL_SEARCH_DEFER_THRESHOLD": value("TOOL_SEARCH_DEFER_THRESHOLD", .int(400)),
            "TOOL_SEARCH_ALWAYS_LOADED": value("TOOL_SEARCH_ALWAYS_LOADED", .array([])),
            "TOOL_SEARCH_DEFER_BUILTIN_TOOLS": value("TOOL_SEARCH_DEFER_BUILTIN_TOOLS", .bool(true)),
        ])
    }

    @Sendable func config(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        return JSONResponse.text(Self.configJSON(try await history.chats.settings("chat")))
    }

    @Sendable func updateConfig(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let form = try JSONBody.decode(ConfigForm.self, from: try await history.body(request))
        let threshold = max(1, form.threshold ?? Self.defaultThreshold)
        let stored: [String: JSONValue] = [
            "CONTEXT_COMPACTION_MODEL": .string(form.model ?? ""),
            "ENABLE_CONTEXT_COMPACTION": .bool(form.enable),
            "CONTEXT_COMPACTION_TOKEN_THRESHOLD": .int(threshold),
            "CONTEXT_COMPACTION_TOKEN_CAP": .int(max(1, form.cap.flatMap { $0 == 0 ? nil : $0 } ?? threshold)),
            "CONTEXT_COMPACTION_RETENTION_PERCENTAGE": .int(min(50, max(10, form.retention ?? 40))),
            "CONTEXT_COMPACTION_PROMPT_TEMPLATE": .string(form.template),
            "ENABLE_TOOL_PERMISSIONS": .bool(form.toolPermissions ?? false),
            "ENABLE_TOOL_SEARCH": .bool(form.toolSearch ?? false),
            "TOOL_SEARCH_DEFER_THRESHOLD": .int(max(0, form.deferThreshold ?? 400)),
            "TOOL_SEARCH_ALWAYS_LOADED": .array(
                (form.alwaysLoaded ?? []).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                    .map(JSONValue.string)),
            "TOOL_SEARCH_DEFER_BUILTIN_TOOLS": .bool(form.deferBuiltin ?? true),
        ]
        try await history.chats.saveSettings("chat", stored)
        return JSONResponse.text(Self.configJSON(stored))
    }

    /// Skiff does not compact conversations: the answer says so, as the original does while compaction is off.
    @Sendable func compact(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let data = try await history.body(request)
        let model = data.isEmpty ? nil : try JSONBody.decode(JSONValue.self, from: data)["model"]?.stringValue
        guard let json = try await history.chats.ownJSON(id: id, userID: user.userID),
            let chat = JSONValue.parse(String(buffer: json))?["chat"]
        else { throw Self.notFound401 }
        let latest = ChatDocument.branch(chat.objectValue ?? [:]).last { $0["model"]?.stringValue != nil }
        var models: [JSONValue] = []
        if case .array(let list)? = chat["models"] { models = list }
        guard model ?? latest?["model"]?.stringValue ?? models.first?.stringValue != nil else {
            throw APIError(.badRequest, "No model found for context compaction.")
        }
        return JSONResponse.text(
            OrderedJSON.object(["ok": .bool(true), "compacted": .bool(false), "reason": .string("disabled"), "context_usage": .null]))
    }

    /// A new chat holding one branch of the conversation, from its first message to `message_id` (or the
    /// current message).
    @Sendable func fork(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let data = try await history.body(request)
        let requested = data.isEmpty ? nil : try JSONBody.decode(JSONValue.self, from: data)["message_id"]?.stringValue
        let json = try await withOwnChat(id, user, missing: Self.notFound401) { row, connection -> String in
            guard let source = requested ?? row.currentMessageID ?? row.chat["history"]?["currentId"]?.stringValue else {
                throw APIError(.badRequest, "chat has no messages to fork")
            }
            let messages = row.chat["history"]?["messages"]?.objectValue ?? [:]
            var path: [String] = []
            var current: String? = source
            while let node = current {
                guard case .object(let message)? = messages[node] else { throw APIError(.notFound, "message not found") }
                if path.contains(node) { throw APIError(.badRequest, "message branch contains a cycle") }
                path.insert(node, at: 0)
                current = message["parentId"]?.stringValue
            }
            var forked: [String: JSONValue] = [:]
            var list: [JSONValue] = []
            for (index, node) in path.enumerated() {
                guard case .object(var message)? = messages[node] else { continue }
                message["childrenIds"] = .array(index + 1 < path.count ? [.string(path[index + 1])] : [])
                if message["role"]?.stringValue == "assistant", message["done"] == .bool(false) { message["done"] = .bool(true) }
                forked[node] = .object(message)
                list.append(.object(message))
            }
            var chat = row.chat
            chat["currentId"] = nil
            chat["share_mode"] = nil
            chat["originalChatId"] = .string(row.id)
            chat["branchPointMessageId"] = .string(source)
            chat["title"] = .string("\(row.title) (fork)")
            chat["history"] = .object(["messages": .object(forked), "currentId": .string(source)])
            chat["messages"] = .array(list)
            var meta = row.meta
            meta["forked_from"] = .string(row.id)
            meta["forked_from_message_id"] = .string(source)
            let now = ChatHistory.now()
            let copy = ChatRow(
                id: UUID().uuidString.lowercased(), userID: user.userID, title: ChatDocument.title(chat), chat: chat,
                meta: meta, variables: row.variables, folderID: row.folderID, pinned: row.pinned, archived: false,
                shareID: nil, currentMessageID: source, createdAt: now, updatedAt: now)
            let json = try await history.create(copy, actor: user.userID, lastReadAt: now, on: connection)
            return json
        }
        return JSONResponse.text(json)
    }
}

extension ChatDocument {
    /// The messages from the first one down to the current message, in order.
    static func branch(_ chat: [String: JSONValue]) -> [[String: JSONValue]] {
        let messages = chat["history"]?["messages"]?.objectValue ?? [:]
        var result: [[String: JSONValue]] = []
        var seen: Set<String> = []
        var current = chat["history"]?["currentId"]?.stringValue
        while let id = current, !seen.contains(id), case .object(let message)? = messages[id] {
            seen.insert(id)
            result.insert(message, at: 0)
            current = message["parentId"]?.stringValue
        }
        return result
    }
}
