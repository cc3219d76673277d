// /api/v1/chats: a user's conversations: create, list, read, update, pin, archive, tag, share, clone, import.
import Foundation
import Hummingbird
import PostgresNIO
import Shared

struct ChatsController {
    let history: ChatHistory

    static let notFound401 = APIError(.unauthorized, ErrorText.notFound)
    static let prohibited = APIError.accessProhibited
    static let somethingWrong = APIError(.unauthorized, "Something went wrong :/")

    /// Routes only other services call (the gateway does not route `/internal`).
    var internalRoutes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.post(":id/read", use: stampRead)
        return routes
    }

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: list)
        routes.get("list", use: list)
        routes.post("read", use: markAllRead)
        routes.delete("/", use: deleteAll)
        routes.get("list/user/:user_id", use: listOfUser)
        routes.post("new", use: create)
        routes.post("import", use: importChats)
        routes.get("search", use: search)
        routes.get("folder/:folder_id", use: folderChats)
        routes.get("folder/:folder_id/list", use: folderList)
        routes.get("pinned", use: pinnedList)
        routes.get("all", use: exportAll)
        routes.get("all/archived", use: allArchived)
        routes.get("all/tags", use: allTags)
        routes.get("all/db", use: allInDatabase)
        routes.get("archived", use: archivedList)
        routes.get("archived/count", use: archivedCount)
        routes.post("archive/all", use: archiveAll)
        routes.post("unarchive/all", use: unarchiveAll)
        routes.delete("share/all", use: unshareAll)
        routes.get("shared", use: sharedList)
        routes.get("share/:share_id", use: getShared)
        routes.post("shared/:id/access/update", use: updateShareAccess)
        routes.get("shared/:id/access", use: shareAccess)
        routes.post("tags", use: chatsByTag)
        routes.get(":id", use: get)
        routes.post(":id", use: update)
        routes.patch(":id/params", use: updateParams)
        routes.post(":id/messages/:message_id", use: updateMessage)
        routes.delete(":id/messages/:message_id", use: deleteMessage)
        routes.post(":id/messages/:message_id/event", use: messageEvent)
        routes.delete(":id", use: delete)
        routes.get(":id/pinned", use: pinned)
        routes.post(":id/pin", use: pin)
        routes.post(":id/clone", use: clone)
        routes.post(":id/clone/shared", use: cloneShared)
        routes.post(":id/archive", use: archive)
        routes.post(":id/share", use: share)
        routes.delete(":id/share", use: unshare)
        routes.post(":id/unread", use: markUnread)
        routes.post(":id/folder", use: moveToFolder)
        routes.get(":id/tags", use: tags)
        routes.post(":id/tags", use: addTag)
        routes.delete(":id/tags", use: removeTag)
        return routes
    }

    // MARK: Forms

    struct ChatForm: Decodable {
        var chat: [String: JSONValue]
        var variables: [String: JSONValue]?
        var folderID: String?
        enum CodingKeys: String, CodingKey {
            case chat, variables
            case folderID = "folder_id"
        }
    }

    struct ImportForm: Decodable {
        struct Item: Decodable {
            var chat: [String: JSONValue]
            var variables: [String: JSONValue]?
            var folderID: String?
            var meta: [String: JSONValue]?
            var pinned: Bool?
            var archived: Bool?
            var currentMessageID: String?
            var createdAt: Int?
            var updatedAt: Int?
            enum CodingKeys: String, CodingKey {
                case chat, variables, meta, pinned, archived
                case folderID = "folder_id"
                case currentMessageID = "current_message_id"
                case createdAt = "created_at"
                case updatedAt = "updated_at"
            }
        }
        var chats: [Item]
    }

    struct TagForm: Decodable {
        var name: String
    }

    struct TagFilterForm: Decodable {
        var name: String
        var skip: Int?
        var limit: Int?
    }

    struct MessageForm: Decodable {
        var content: String?
        var voice: [String: JSONValue]?
    }

    struct EventForm: Decodable {
        var type: String
        var data: [String: JSONValue]
    }

    struct FolderForm: Decodable {
        var folderID: String?
        enum CodingKeys: String, CodingKey { case folderID = "folder_id" }
    }

    struct CloneForm: Decodable {
        var title: String?
    }

    struct ShareForm: Decodable {
        var shareMode: String?
        enum CodingKeys: String, CodingKey { case shareMode = "share_mode" }
    }

    struct AccessForm: Decodable {
        var accessGrants: [JSONValue]
        var shareMode: String?
        enum CodingKeys: String, CodingKey {
            case accessGrants = "access_grants"
            case shareMode = "share_mode"
        }
    }

    // MARK: Helpers

    static func tagID(_ name: String) -> String {
        name.replacingOccurrences(of: " ", with: "_").lowercased()
    }

    /// Runs `body` on the caller's chat, locked; `missing` is what another user's or an unknown id answers.
    /// With `document: false` the chat JSON is neither read nor written (flags, tags, folder, read state).
    func withOwnChat<T: Sendable>(
        _ id: String, _ user: Identity, missing: APIError, document: Bool = true,
        _ body: @escaping @Sendable (inout ChatRow, PostgresConnection) async throws -> T
    ) async throws -> T {
        try await history.transaction { connection in
            guard var row = try await history.chats.lock(id: id, userID: user.userID, document: document, on: connection)
            else {
                throw missing
            }
            return try await body(&row, connection)
        }
    }

    /// Writes back a changed chat and records its `chat.updated` event; returns the `ChatResponse` text.
    @discardableResult
    func saveUpdated(_ row: ChatRow, actor: String, answering: Bool = true, on connection: PostgresConnection)
        async throws -> String
    {
        let json = try await history.chats.save(row, answering: answering, on: connection)
        try await history.publishChat(
            "chat.updated", chatID: row.id, ownerID: row.userID, actor: actor, extra: ["title": .string(row.title)],
            on: connection)
        return json
    }

    // MARK: Lists

    @Sendable func list(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let page = try JSONBody.queryInt(request.queryValue("page"), name: "page")
        let includePinned = try JSONBody.queryBool(request.queryValue("include_pinned"), name: "include_pinned", default: false)
        let includeFolders = try JSONBody.queryBool(
            request.queryValue("include_folders"), name: "include_folders", default: false)
        let offset = try ChatHistory.offset(page: page)
        let order = ChatOrder.list(
            sortBy: request.queryValue("sort_by"), sortDir: request.queryValue("sort_dir"), defaultSort: "updated_at")
        let limit = page == nil ? nil : 60
        if order == .recent {
            return JSONResponse.text(
                try await history.chats.page(
                    userID: user.userID, includePinned: includePinned, includeFolders: includeFolders, limit: limit,
                    offset: offset))
        }
        let sql = ChatStore.list(
            item: ChatStore.titleJSON,
            where: { sql in
                sql.append("c.user_id = ")
                sql.bind(user.userID)
                sql.append(" AND NOT c.archived")
                if !includeFolders { sql.append(" AND c.folder_id IS NULL") }
                if !includePinned { sql.append(" AND NOT c.pinned") }
            }, order: order, limit: limit, offset: offset)
        return JSONResponse.text(try await history.chats.array(sql))
    }

    @Sendable func pinnedList(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let sql = ChatStore.list(
            item: ChatStore.titleJSON,
            where: { sql in
                sql.append("c.user_id = ")
                sql.bind(user.userID)
                sql.append(" AND c.pinned AND NOT c.archived")
            }, order: .recent)
        return JSONResponse.text(try await history.chats.array(sql))
    }

    /// The archived list, and the admin's list of one user's chats: `query` on the title, `order_by` and
    /// `direction`, 60 per page.
    func filteredList(
        _ request: Request, userID: String, archivedOnly: Bool, item: String
    ) async throws -> Response {
        let page = try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1
        let offset = try ChatHistory.offset(page: page)
        let text = request.queryValue("query")
        let order =
            try ChatOrder.parse(orderBy: request.queryValue("order_by"), direction: request.queryValue("direction"))
            ?? .recent
        let sql = ChatStore.list(
            item: item,
            where: { sql in
                sql.append("c.user_id = ")
                sql.bind(userID)
                if archivedOnly { sql.append(" AND c.archived") }
                if let text, !text.isEmpty {
                    sql.append(" AND c.title ILIKE ")
                    sql.bind("%" + text.likeEscaped + "%")
                }
            }, order: order, limit: 60, offset: offset)
        return JSONResponse.text(try await history.chats.array(sql))
    }

    @Sendable func archivedList(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        return try await filteredList(
            request, userID: user.userID, archivedOnly: true, item: ChatStore.archivedTitleJSON)
    }

    @Sendable func listOfUser(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let userID = try context.parameters.require("user_id")
        return try await filteredList(request, userID: userID, archivedOnly: false, item: ChatStore.titleJSON)
    }

    @Sendable func archivedCount(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        return JSONResponse.text(String(try await history.chats.count(userID: user.userID, archived: true)))
    }

    @Sendable func allArchived(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let sql = ChatStore.list(
            item: ChatStore.chatJSON(),
            where: { sql in
                sql.append("c.user_id = ")
                sql.bind(user.userID)
                sql.append(" AND c.archived")
            }, order: .recent)
        return JSONResponse.text(try await history.chats.array(sql))
    }

    @Sendable func allInDatabase(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let sql = ChatStore.list(item: ChatStore.chatJSON(), where: { $0.append("true") }, order: .recent)
        return JSONResponse.text(try await history.chats.array(sql))
    }

    /// Every chat of the caller as NDJSON, one `ChatResponse` per line.
    @Sendable func exportAll(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let body = try await history.chats.ndjson(userID: user.userID)
        return Response(
            status: .ok, headers: [.contentType: "application/x-ndjson"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    @Sendable func folderChats(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let folderID = try context.parameters.require("folder_id")
        let history = self.history
        let ids = try await history.postgres.withConnection { connection in
            try await history.folders.subtree(of: folderID, userID: user.userID, on: connection)
        }
        let sql = ChatStore.list(
            item: ChatStore.chatJSON(),
            where: { sql in
                sql.append("c.user_id = ")
                sql.bind(user.userID)
                sql.append(" AND c.folder_id = ANY(")
                sql.bind(ids.isEmpty ? [folderID] : ids)
                sql.append(") AND NOT c.pinned AND NOT c.archived")
            }, order: .recent)
        return JSONResponse.text(try await history.chats.array(sql))
    }

    @Sendable func folderList(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let folderID = try context.parameters.require("folder_id")
        let page = try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1
        let offset = try ChatHistory.offset(page: page, size: 10)
        let order = ChatOrder.list(
            sortBy: request.queryValue("sort_by"), sortDir: request.queryValue("sort_dir"), defaultSort: "unread_updated_at")
        let sql = ChatStore.list(
            item: ChatStore.titleJSON,
            where: { sql in
                sql.append("c.user_id = ")
                sql.bind(user.userID)
                sql.append(" AND c.folder_id = ")
                sql.bind(folderID)
                sql.append(" AND NOT c.pinned AND NOT c.archived")
            }, order: order, limit: 10, offset: offset)
        return JSONResponse.text(try await history.chats.array(sql))
    }

    @Sendable func chatsByTag(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let form = try JSONBody.decode(TagFilterForm.self, from: try await history.body(request))
        let tag = Self.tagID(form.name)
        let limit = form.limit ?? 50
        let sql = ChatStore.list(
            item: ChatStore.titleJSON,
            where: { sql in
                sql.append("c.user_id = ")
                sql.bind(user.userID)
                sql.append(" AND c.meta -> 'tags' ? ")
                sql.bind(tag)
            }, order: .recent, limit: limit > 0 ? limit : nil, offset: max(0, form.skip ?? 0))
        let body = try await history.chats.array(sql)
        if body == "[]" { try await history.chats.deleteUnusedTags(ids: [tag], userID: user.userID) }
        return JSONResponse.text(body)
    }

    @Sendable func allTags(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        return JSONResponse.text(try await history.chats.allTagsJSON(userID: user.userID))
    }

    // MARK: Search

    @Sendable func search(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        guard let text = request.queryValue("text") else {
            throw APIError.validation([
                ValidationIssue(type: "missing", loc: [.string("query"), .string("text")], msg: "Field required", input: .null)
            ])
        }
        let page = try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1
        let offset = try ChatHistory.offset(page: page)
        let search = ChatSearch(text: text)
        var folderIDs: [String]?
        if !search.folders.isEmpty {
            folderIDs = try await matchingFolders(search.folders, userID: user.userID)
        }
        let rows = try await history.chats.search(search, userID: user.userID, folderIDs: folderIDs, offset: offset)
        let items = rows.map { ChatSearch.item($0, snippet: search.snippet(in: $0.contents)) }
        if items.isEmpty, page == 1, search.singleTagQuery, let tag = search.tags.first {
            try await history.chats.deleteUnusedTags(ids: [tag], userID: user.userID)
        }
        return JSONResponse.text(OrderedJSON.array(items))
    }

    /// The caller's folders whose normalised name matches, with their subfolders.
    func matchingFolders(_ names: [String], userID: String) async throws -> [String] {
        let history = self.history
        let folders = try await history.postgres.withConnection { try await history.folders.rows(userID: userID, on: $0) }
        let parents = FolderTree.parents(folders)
        var result: Set<String> = []
        for folder in folders where names.contains(ChatSearch.folderName(folder.name)) {
            result.formUnion(FolderTree.subtree(of: folder.id, parents: parents))
        }
        return Array(result)
    }

    // MARK: Create, import, read

    @Sendable func create(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let form = try JSONBody.decode(ChatForm.self, from: try await history.body(request))
        var chat = form.chat
        if let history = chat["history"], history != .null, history.objectValue == nil {
            throw ChatHistory.failed
        }
        ChatDocument.setAuthors(&chat, userID: user.userID, name: user.name)
        let now = ChatHistory.now()
        let row = ChatRow(
            id: UUID().uuidString.lowercased(), userID: user.userID, title: ChatDocument.title(chat), chat: chat, meta: [:],
            variables: .object(form.variables ?? [:]), folderID: form.folderID, pinned: false, archived: false,
            shareID: nil, currentMessageID: ChatDocument.currentMessageID(chat), createdAt: now, updatedAt: now)
        guard let folder = form.folderID else {
            return JSONResponse.text(try await history.create(row, actor: user.userID, lastReadAt: now))
        }
        let json = try await history.transaction { connection -> String in
            guard try await history.folders.exists(id: folder, userID: user.userID, on: connection) else {
                throw APIError.notFound
            }
            return try await history.create(row, actor: user.userID, lastReadAt: now, on: connection)
        }
        return JSONResponse.text(json)
    }

    /// An import this large refreshes the planner's statistics of `chat.chats` (see `TableStatistics`).
    static let bulkImport = 50
    static let statistics = TableStatistics(table: "chat.chats", interval: .seconds(60))

    @Sendable func importChats(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let form = try JSONBody.decode(ImportForm.self, from: try await history.body(request))
        let now = ChatHistory.now()
        let bodies = try await history.transaction { connection -> [String] in
            var owned: [String: Bool] = [:]
            var bodies: [String] = []
            var tags: [(id: String, name: String)] = []
            for item in form.chats {
                var chat = item.chat
                ChatDocument.setAuthors(&chat, userID: user.userID, name: user.name)
                var folderID = item.folderID
                if let folder = folderID {
                    if owned[folder] == nil {
                        owned[folder] = try await history.folders.exists(id: folder, userID: user.userID, on: connection)
                    }
                    if owned[folder] != true { folderID = nil }
                }
                let meta = item.meta ?? [:]
                let row = ChatRow(
                    id: UUID().uuidString.lowercased(), userID: user.userID, title: ChatDocument.title(chat), chat: chat,
                    meta: meta, variables: .object(item.variables ?? [:]), folderID: folderID, pinned: item.pinned ?? false,
                    archived: item.archived ?? false, shareID: nil,
                    currentMessageID: item.currentMessageID ?? ChatDocument.currentMessageID(chat),
                    createdAt: item.createdAt.flatMap { $0 == 0 ? nil : $0 } ?? now,
                    updatedAt: item.updatedAt.flatMap { $0 == 0 ? nil : $0 } ?? now)
                bodies.append(try await history.create(row, actor: user.userID, lastReadAt: now, on: connection))
                tags += row.tags.map { (id: Self.tagID($0), name: $0) }
            }
            // One statement for every chat's tags; in import order, so a tag keeps its first spelling.
            try await history.chats.ensureTags(tags, userID: user.userID, on: connection)
            return bodies
        }
        if bodies.count >= Self.bulkImport { Self.statistics.refresh(history.chats.postgres, logger: history.chats.logger) }
        return JSONResponse.text("[" + bodies.joined(separator: ",") + "]")
    }

    @Sendable func get(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        guard let json = try await history.chats.ownJSON(id: id, userID: user.userID) else {
            throw Self.notFound401
        }
        return JSONResponse.text(json)
    }

    // MARK: Update

    @Sendable func update(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(ChatForm.self, from: try await history.body(request))
        var incoming = form.chat
        if let history = incoming["history"], history.objectValue == nil {
            throw ChatHistory.failed
        }
        ChatDocument.setAuthors(&incoming, userID: user.userID, name: user.name)
        let touch = incoming["history"] != nil || incoming["messages"] != nil
        let recompute = ["history", "messages", "currentId", "branchPointMessageId"].contains { incoming[$0] != nil }
        let incomingChat = incoming
        let json = try await withOwnChat(id, user, missing: Self.prohibited) { row, connection in
            row.chat = ChatDocument.merge(stored: row.chat, incoming: incomingChat, ownerID: row.userID)
            row.title = ChatDocument.title(row.chat)
            if recompute { row.currentMessageID = ChatDocument.currentMessageID(row.chat) }
            if touch { row.updatedAt = ChatHistory.now() }
            if let variables = form.variables { row.variables = .object(variables) }
            return try await saveUpdated(row, actor: user.userID, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func updateParams(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let params = try JSONBody.decode([String: JSONValue].self, from: try await history.body(request))
        let merged = try await withOwnChat(id, user, missing: Self.prohibited) { row, connection -> JSONValue in
            var current = row.chat["params"]?.objectValue ?? [:]
            for (key, value) in params { current[key] = value }
            row.chat["params"] = .object(current)
            try await saveUpdated(row, actor: user.userID, answering: false, on: connection)
            return .object(current)
        }
        return try JSONResponse.make(merged)
    }

    @Sendable func updateMessage(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let messageID = try context.parameters.require("message_id")
        let form = try JSONBody.decode(MessageForm.self, from: try await history.body(request))
        if let voice = form.voice, JSONValue.object(voice).jsonText.utf8.count > 100_000 {
            throw APIError(.badRequest, "Voice metadata is too large")
        }
        let json = try await withOwnChat(id, user, missing: Self.prohibited) { row, connection -> String in
            var fields: [String: JSONValue] = [:]
            if let content = form.content { fields["content"] = .string(content) }
            if let voice = form.voice {
                guard case .object(let message)? = row.chat["history"]?["messages"]?[messageID] else {
                    throw APIError.notFound
                }
                var meta = message["meta"]?.objectValue ?? [:]
                meta["voice"] = .object(voice)
                fields["meta"] = .object(meta)
            }
            guard !fields.isEmpty else { throw APIError(.badRequest, "No message changes supplied") }
            ChatDocument.upsertMessage(&row.chat, id: messageID, fields: fields, now: ChatHistory.now())
            row.title = ChatDocument.title(row.chat)
            row.currentMessageID = ChatDocument.currentMessageID(row.chat)
            row.updatedAt = ChatHistory.now()
            return try await saveUpdated(row, actor: user.userID, on: connection)
        }
        let owner = user.userID
        var data: [String: JSONValue] = ["chat_id": .string(id), "message_id": .string(messageID)]
        if let content = form.content { data["content"] = .string(content) } else if let voice = form.voice {
            data["voice"] = .object(voice)
        }
        await history.realtime.emit(
            "events",
            .object([
                "chat_id": .string(id), "message_id": .string(messageID),
                "data": .object([
                    "type": .string(form.content != nil ? "chat:message" : "chat:message:voice"), "data": .object(data),
                ]),
            ]), to: .room("user:\(owner)"))
        return JSONResponse.text(json)
    }

    @Sendable func deleteMessage(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let messageID = try context.parameters.require("message_id")
        let json = try await withOwnChat(id, user, missing: Self.prohibited) { row, connection -> String in
            guard ChatDocument.deleteMessage(&row.chat, id: messageID) else {
                return try await history.chats.json(id: row.id, on: connection) ?? "null"
            }
            row.currentMessageID = ChatDocument.currentMessageID(row.chat)
            row.updatedAt = ChatHistory.now()
            return try await saveUpdated(row, actor: user.userID, on: connection)
        }
        return JSONResponse.text(json)
    }

    /// Relays an event for a message to the owner's sockets, and keeps what it changes (`message` appends to
    /// the content, `replace` sets it, `status` adds to the status history).
    @Sendable func messageEvent(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let messageID = try context.parameters.require("message_id")
        let form = try JSONBody.decode(EventForm.self, from: try await history.body(request))
        // Most events only pass through: for those the ownership check needs the row, not its document.
        if ChatDocument.keptEvents.contains(form.type) {
            try await withOwnChat(id, user, missing: Self.prohibited) { row, connection in
                guard ChatDocument.applyEvent(&row.chat, messageID: messageID, type: form.type, data: form.data) else {
                    return
                }
                if ["message", "replace"].contains(form.type) { row.updatedAt = ChatHistory.now() }
                try await saveUpdated(row, actor: user.userID, answering: false, on: connection)
            }
        } else {
            // Passing through: only the owner is checked, without a transaction or a row lock.
            guard try await history.chats.owner(of: id) == user.userID else { throw Self.prohibited }
        }
        let event: JSONValue = .object(["type": .string(form.type), "data": .object(form.data)])
        var delivered = true
        if form.type != "chat:messages" {
            delivered = await history.realtime.emit(
                "events", .object(["chat_id": .string(id), "message_id": .string(messageID), "data": event]),
                to: .room("user:\(user.userID)"))
        }
        let mirrored: Set<String> = [
            "chat:messages", "chat:active", "status", "source", "citation", "files", "embeds", "chat:message:error",
            "chat:tasks:cancel", "chat:message:follow_ups",
        ]
        if mirrored.contains(form.type) {
            await history.realtime.emit(
                "events",
                .object([
                    "chat_id": .string(id), "message_id": .string(messageID), "user_id": .string(user.userID),
                    "shared": .bool(true), "data": event,
                ]), to: .room("chat:\(id)"))
        }
        return JSONResponse.text(delivered ? "true" : "false")
    }

    // MARK: Delete

    @Sendable func delete(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        try await withOwnChat(id, user, missing: APIError.notFound, document: false) { row, connection in
            let tags = row.tags
            _ = try await history.chats.delete(userID: row.userID, ids: [row.id], on: connection)
            try await history.chats.deleteUnusedTags(ids: tags, userID: row.userID, on: connection)
            try await history.publishChat(
                "chat.deleted", chatID: row.id, ownerID: row.userID, actor: user.userID, on: connection)
        }
        return JSONResponse.text("true")
    }

    @Sendable func deleteAll(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        try await history.transaction { connection in
            let ids = try await history.chats.delete(userID: user.userID, on: connection)
            try await history.chats.deleteAllTags(userID: user.userID, on: connection)
            try await history.publishChats(
                "chat.deleted", chatIDs: ids, ownerID: user.userID, actor: user.userID, on: connection)
        }
        return JSONResponse.text("true")
    }

    // MARK: Pin, archive, folder, read state

    @Sendable func pinned(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        guard let pinned = try await history.chats.pinned(id: id, userID: user.userID) else { throw Self.somethingWrong }
        return JSONResponse.text(pinned ? "true" : "false")
    }

    @Sendable func pin(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let json = try await withOwnChat(id, user, missing: Self.somethingWrong, document: false) { row, connection -> String in
            row.pinned.toggle()
            let now = ChatHistory.now()
            row.updatedAt = now
            row.lastReadAt = now
            return try await saveUpdated(row, actor: user.userID, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func archive(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let json = try await withOwnChat(id, user, missing: Self.somethingWrong, document: false) { row, connection -> String in
            row.archived.toggle()
            row.folderID = nil
            let now = ChatHistory.now()
            row.updatedAt = now
            row.lastReadAt = now
            let json = try await saveUpdated(row, actor: user.userID, on: connection)
            if !row.archived {
                try await history.chats.ensureTags(row.tags.map { ($0, $0) }, userID: row.userID, on: connection)
            }
            return json
        }
        return JSONResponse.text(json)
    }

    @Sendable func archiveAll(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        try await setArchivedAll(true, context: context)
    }

    @Sendable func unarchiveAll(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        try await setArchivedAll(false, context: context)
    }

    func setArchivedAll(_ archived: Bool, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        try await history.transaction { connection in
            try await history.chats.setArchivedAll(archived, userID: user.userID, on: connection)
            try await history.publish(
                archived ? "chat.archived_all" : "chat.unarchived_all", actor: user.userID,
                data: ["user_id": .string(user.userID)], on: connection)
        }
        return JSONResponse.text("true")
    }

    @Sendable func moveToFolder(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(FolderForm.self, from: try await history.body(request))
        let json = try await withOwnChat(id, user, missing: Self.somethingWrong, document: false) { row, connection -> String in
            if let folder = form.folderID, !(try await history.folders.exists(id: folder, userID: user.userID, on: connection)) {
                throw APIError.notFound
            }
            let now = ChatHistory.now()
            row.folderID = form.folderID
            row.updatedAt = now
            row.pinned = false
            if form.folderID != nil { row.archived = false }
            row.lastReadAt = now
            return try await saveUpdated(row, actor: user.userID, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func markAllRead(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let (count, unread) = try await history.transaction { connection in
            let count = try await history.chats.markRead(folderIDs: nil, userID: user.userID, on: connection)
            return (count, try await history.folders.unreadTotals(userID: user.userID, on: connection))
        }
        return JSONResponse.text(
            OrderedJSON.object([
                "updated_count": .int(count), "folder_unread_counts": .object(unread.mapValues(JSONValue.int)),
            ]))
    }

    @Sendable func markUnread(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let (folder, unread) = try await withOwnChat(id, user, missing: APIError.notFound, document: false) {
            row, connection -> (String?, [String: Int]) in
            row.lastReadAt = 0
            try await history.chats.save(row, answering: false, on: connection)
            return (row.folderID, try await history.folders.unreadTotals(userID: user.userID, on: connection))
        }
        return JSONResponse.text(
            OrderedJSON.object([
                "chat_id": .string(id), "last_read_at": .int(0), "folder_id": JSONValue(folder),
                "folder_unread_counts": .object(unread.mapValues(JSONValue.int)),
            ]))
    }

    /// `POST /internal/chats/{id}/read` (realtime's `events:chat` `last_read_at`): stamps the chat read and
    /// answers the `chat:list` data the user's sockets get, with `folder_unread_counts` when it was unread.
    @Sendable func stampRead(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let now = ChatHistory.now()
        let answer = try await history.transaction { connection -> String? in
            guard let wasUnread = try await history.chats.stampRead(id: id, userID: user.userID, now: now, on: connection)
            else { return nil }
            var data: [(String, JSONValue)] = [("chat_id", .string(id)), ("last_read_at", .int(now))]
            if wasUnread {
                let counts = try await history.folders.unreadTotals(userID: user.userID, on: connection)
                data.append(("folder_unread_counts", .object(counts.mapValues(JSONValue.int))))
            }
            return OrderedJSON.object(data)
        }
        guard let answer else { throw APIError.notFound }
        return JSONResponse.text(answer)
    }

    // MARK: Tags

    @Sendable func tags(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        guard let json = try await history.chats.chatTagsJSON(id: id, userID: user.userID) else { throw Self.notFound401 }
        return JSONResponse.text(json)
    }

    @Sendable func addTag(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(TagForm.self, from: try await history.body(request))
        let tag = Self.tagID(form.name)
        let json = try await withOwnChat(id, user, missing: Self.somethingWrong, document: false) { row, connection -> String in
            if tag == "none" { throw APIError(.badRequest, "[ERROR: Tag name cannot be 'None']") }
            var tags = row.tags
            if !tags.contains(tag) {
                try await history.chats.ensureTags([(tag, form.name)], userID: row.userID, on: connection)
                tags.append(tag)
                row.meta["tags"] = .array(tags.map(JSONValue.string))
                try await saveUpdated(row, actor: user.userID, answering: false, on: connection)
            }
            return try await history.chats.tagsJSON(ids: tags, userID: row.userID, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func removeTag(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(TagForm.self, from: try await history.body(request))
        let tag = Self.tagID(form.name)
        let json = try await withOwnChat(id, user, missing: Self.notFound401, document: false) { row, connection -> String in
            let tags = row.tags.filter { $0 != tag }
            if tags.count != row.tags.count {
                row.meta["tags"] = .array(tags.map(JSONValue.string))
                try await saveUpdated(row, actor: user.userID, answering: false, on: connection)
            }
            try await history.chats.deleteUnusedTags(ids: [tag], userID: row.userID, on: connection)
            return try await history.chats.tagsJSON(ids: tags, userID: row.userID, on: connection)
        }
        return JSONResponse.text(json)
    }

    // MARK: Clone

    @Sendable func clone(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(CloneForm.self, from: try await history.body(request))
        let json = try await withOwnChat(id, user, missing: Self.somethingWrong) { row, connection -> String in
            var chat = row.chat
            chat["originalChatId"] = .string(row.id)
            chat["branchPointMessageId"] = chat["history"]?["currentId"] ?? .null
            chat["title"] = .string(form.title.flatMap { $0.isEmpty ? nil : $0 } ?? "Clone of \(row.title)")
            let now = ChatHistory.now()
            let copy = ChatRow(
                id: UUID().uuidString.lowercased(), userID: user.userID, title: ChatDocument.title(chat), chat: chat,
                meta: row.meta, variables: row.variables, folderID: row.folderID, pinned: row.pinned, archived: false,
                shareID: nil, currentMessageID: ChatDocument.currentMessageID(chat), createdAt: now, updatedAt: now)
            return try await history.create(copy, actor: user.userID, lastReadAt: now, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func cloneShared(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let shareID = try context.parameters.require("id")
        let share = try await readableShare(shareID, user)
        var chat = try SharedView(share: share).shaped(for: user)
        ChatDocument.reattribute(&chat, from: share.userID, to: user.userID, name: user.name)
        chat["originalChatId"] = .string(share.id)
        chat["branchPointMessageId"] = chat["history"]?["currentId"] ?? .null
        chat["title"] = .string("Clone of \(share.title)")
        let now = ChatHistory.now()
        let copy = ChatRow(
            id: UUID().uuidString.lowercased(), userID: user.userID, title: ChatDocument.title(chat), chat: chat, meta: [:],
            variables: .object([:]), folderID: nil, pinned: false, archived: false, shareID: nil,
            currentMessageID: ChatDocument.currentMessageID(chat), createdAt: now, updatedAt: now)
        return JSONResponse.text(try await history.create(copy, actor: user.userID, lastReadAt: now))
    }

    // MARK: Share

    /// The share with this id, when `user` may open it: the owner and readers the owner granted may; admins
    /// may open any.
    func readableShare(_ id: String, _ user: Identity) async throws -> ChatStore.Share {
        guard let share = try await history.chats.share(id: id) else { throw Self.notFound401 }
        if share.userID == user.userID || user.isAdmin { return share }
        let granted = try await history.chats.grants(chatID: share.chatID).contains { grant in
            grant.permission == "read"
                && ((grant.principalType == "user" && (grant.principalID == "*" || grant.principalID == user.userID))
                    || (grant.principalType == "group" && user.groupIDs.contains(grant.principalID))
                    || (grant.principalType == "anyone" && grant.principalID == "*"))
        }
        guard granted else { throw Self.prohibited }
        return share
    }

    @Sendable func share(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let data = try await history.body(request)
        var form = ShareForm()
        var modeSent = false
        if !data.isEmpty, case let body = try JSONBody.decode(JSONValue.self, from: data), body != .null {
            form = try JSONBody.decode(ShareForm.self, from: data)
            modeSent = body["share_mode"] != nil
            if let mode = form.shareMode, mode != "continue" { throw Self.shareModeIssue(mode) }
        }
        let shareMode = form.shareMode.map(JSONValue.string)
        let keepMode = !modeSent
        let json = try await withOwnChat(id, user, missing: Self.prohibited) { row, connection -> String in
            let shareID = try await history.chats.snapshot(
                row, shareMode: shareMode, keepMode: keepMode, now: ChatHistory.now(), on: connection)
            try await history.publishChat(
                "chat.shared", chatID: row.id, ownerID: row.userID, actor: user.userID,
                extra: ["share_id": .string(shareID)], on: connection)
            return try await history.chats.json(id: row.id, on: connection) ?? "null"
        }
        return JSONResponse.text(json)
    }

    static func shareModeIssue(_ mode: String) -> APIError {
        APIError.validation([
            ValidationIssue(
                type: "literal_error", loc: [.string("body"), .string("share_mode")], msg: "Input should be 'continue'",
                input: .string(mode), ctx: .object(["expected": .string("'continue'")]))
        ])
    }

    @Sendable func unshare(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        try await withOwnChat(id, user, missing: Self.prohibited, document: false) { row, connection in
            try await history.chats.unshare(chatID: row.id, on: connection)
            try await history.publishChat(
                "chat.unshared", chatID: row.id, ownerID: row.userID, actor: user.userID, on: connection)
        }
        return JSONResponse.text("true")
    }

    @Sendable func unshareAll(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        try await history.transaction { connection in
            let ids = try await history.chats.unshareAll(userID: user.userID, on: connection)
            try await history.publish(
                "chat.unshared", actor: user.userID,
                data: ["user_id": .string(user.userID), "chat_ids": .array(ids.map(JSONValue.string))], on: connection)
        }
        return JSONResponse.text("true")
    }

    @Sendable func sharedList(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let page = try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1
        let offset = try ChatHistory.offset(page: page)
        let text = request.queryValue("query")
        let order =
            try ChatOrder.parse(orderBy: request.queryValue("order_by"), direction: request.queryValue("direction"))
            ?? .recent
        guard ["title", "updated_at", "created_at", "id"].contains(order.column) else {
            throw APIError(.badRequest, "Invalid order_by field")
        }
        var sql = SQLBuilder(
            "SELECT coalesce(json_agg(item ORDER BY n), '[]')::text FROM (SELECT \(ChatStore.sharedItemJSON) AS item, ")
        sql.append("row_number() OVER (ORDER BY s.\(order.column) \(order.ascending ? "ASC" : "DESC"), s.id) AS n ")
        sql.append("FROM chat.shared_chats s WHERE s.user_id = ")
        sql.bind(user.userID)
        if let text, !text.isEmpty {
            sql.append(" AND s.title ILIKE ")
            sql.bind("%" + text.likeEscaped + "%")
        }
        sql.append(" ORDER BY n LIMIT 60 OFFSET \(offset)) page")
        return JSONResponse.text(try await history.chats.array(sql))
    }

    @Sendable func getShared(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let shareID = try context.parameters.require("share_id")
        let share = try await readableShare(shareID, user)
        return JSONResponse.text(try SharedView(share: share).response(for: user))
    }

    @Sendable func updateShareAccess(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let data = try await history.body(request)
        let form = try JSONBody.decode(AccessForm.self, from: data)
        let modeSent = (try? JSONBody.decode(JSONValue.self, from: data))?["share_mode"] != nil
        if let mode = form.shareMode, mode != "continue" { throw Self.shareModeIssue(mode) }
        let grants = AccessGrant.normalize(form.accessGrants)
        // Users may share with named users and groups; opening a chat to everyone is for admins.
        if !user.isAdmin, grants.contains(where: { $0.principalID == "*" }) { throw SharingPolicy.audience }
        let shareMode = form.shareMode.map(JSONValue.string)
        let chosen = grants
        let json = try await withOwnChat(id, user, missing: APIError.notFound, document: modeSent) { row, connection -> String in
            try await history.chats.replaceGrants(chosen, chatID: row.id, on: connection)
            if modeSent, row.shareID != nil {
                _ = try await history.chats.snapshot(
                    row, shareMode: shareMode, keepMode: false, now: ChatHistory.now(), on: connection)
            }
            return try await history.chats.json(id: row.id, on: connection) ?? "null"
        }
        return JSONResponse.text(json)
    }

    @Sendable func shareAccess(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        guard try await history.chats.owner(of: id) == user.userID else { throw APIError.notFound }
        let grants = try await history.chats.grants(chatID: id)
        return JSONResponse.text(
            OrderedJSON.array(
                grants.map { grant in
                    OrderedJSON.object([
                        "id": .string("\(id):\(grant.principalType):\(grant.principalID):\(grant.permission)"),
                        "principal_type": .string(grant.principalType), "principal_id": .string(grant.principalID),
                        "permission": .string(grant.permission),
                    ])
                }))
    }
}
