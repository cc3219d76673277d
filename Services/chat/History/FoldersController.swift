// /api/v1/folders: a user's folders for chats: create, list, get, rename, move, expand, delete.
import Foundation
import Hummingbird
import PostgresNIO
import Shared

struct FoldersController {
    let history: ChatHistory

    static let exists = APIError(.badRequest, "[ERROR: Folder already exists]")
    static let intoItself = APIError(.badRequest, "[ERROR: Cannot move a folder into itself or one of its subfolders]")

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: list)
        routes.post("/", use: create)
        routes.get("shared", use: shared)
        routes.get(":id", use: get)
        routes.post(":id/update", use: update)
        routes.post(":id/update/parent", use: move)
        routes.post(":id/update/expanded", use: expand)
        routes.post(":id/access/update", use: updateAccess)
        routes.post(":id/read", use: markRead)
        routes.get(":id/shared/chats", use: sharedChats)
        routes.delete(":id", use: delete)
        return routes
    }

    struct CreateForm: Decodable {
        var name: String
        var data: [String: JSONValue]?
        var meta: [String: JSONValue]?
        var parentID: String?
        enum CodingKeys: String, CodingKey {
            case name, data, meta
            case parentID = "parent_id"
        }
    }

    struct UpdateForm: Decodable {
        var name: String?
        var data: [String: JSONValue]?
        var meta: [String: JSONValue]?
    }

    struct ParentForm: Decodable {
        var parentID: String?
        enum CodingKeys: String, CodingKey { case parentID = "parent_id" }
    }

    struct ExpandedForm: Decodable {
        var isExpanded: Bool
        enum CodingKeys: String, CodingKey { case isExpanded = "is_expanded" }
    }

    /// The list drops `user_id`, `items` and `data`, keeps only `meta.icon`, and counts unread chats of each
    /// folder's whole subtree. Folders whose parent is gone (or that sit on a cycle) move to the top level.
    @Sendable func list(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let store = history.folders
        let body = try await history.postgres.withConnection { connection -> [String] in
            var folders = try await store.rows(userID: user.userID, on: connection)
            let byID = Dictionary(uniqueKeysWithValues: folders.map { ($0.id, $0) })
            var orphans: [String] = []
            for folder in folders where folder.parentID != nil {
                var seen: Set<String> = [folder.id]
                var parent = folder.parentID
                while let current = parent {
                    guard let next = byID[current], !seen.contains(current) else {
                        orphans.append(folder.id)
                        break
                    }
                    seen.insert(current)
                    parent = next.parentID
                }
            }
            if !orphans.isEmpty {
                let now = ChatHistory.now()
                try await store.setParent(ids: orphans, parentID: nil, userID: user.userID, now: now, on: connection)
                for index in folders.indices where orphans.contains(folders[index].id) {
                    folders[index].parentID = nil
                    folders[index].updatedAt = now
                }
            }
            let direct = try await store.unreadCounts(userID: user.userID, on: connection)
            let totals = FolderTree.subtreeTotals(parents: FolderTree.parents(folders), direct: direct)
            return folders.map { folder in
                let meta: JSONValue? =
                    if case .object(let object)? = folder.meta { .object(["icon": object["icon"] ?? .null]) } else { nil }
                return OrderedJSON.object([
                    "id": .string(folder.id), "name": .string(folder.name), "meta": meta ?? .null,
                    "parent_id": JSONValue(folder.parentID), "is_expanded": .bool(folder.isExpanded),
                    "unread_count": .int(totals[folder.id] ?? 0), "created_at": .int(folder.createdAt),
                    "updated_at": .int(folder.updatedAt),
                ])
            }
        }
        return JSONResponse.text(OrderedJSON.array(body))
    }

    @Sendable func create(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let raw = try await history.body(request)
        let form = try JSONBody.decode(CreateForm.self, from: raw)
        try JSONBody.rejectExtraKeys(try JSONBody.decode(JSONValue.self, from: raw), allowed: ["name", "data", "meta", "parent_id"])
        let id = UUID().uuidString.lowercased()
        let json = try await history.transaction { connection -> String in
            try await history.folders.lockUser(user.userID, on: connection)
            if try await history.folders.nameTaken(form.name, parentID: form.parentID, userID: user.userID, on: connection) {
                throw Self.exists
            }
            try await history.folders.insert(
                id: id, userID: user.userID, name: form.name, parentID: form.parentID, meta: form.meta.map(JSONValue.object),
                data: form.data.map(JSONValue.object), now: ChatHistory.now(), on: connection)
            try await history.publish(
                "folder.created", actor: user.userID, data: ["folder_id": .string(id), "user_id": .string(user.userID)],
                on: connection)
            return try await history.folders.json(id: id, userID: user.userID, on: connection) ?? "null"
        }
        return JSONResponse.text(json)
    }

    /// Folders shared with the caller: Skiff keeps folders private to their owner, so there are none.
    @Sendable func shared(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireVerified()
        return JSONResponse.text("[]")
    }

    @Sendable func get(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        guard let json = try await history.folders.json(id: id, userID: user.userID) else { throw APIError.notFound }
        return JSONResponse.text(Self.withAccess(json))
    }

    /// `FolderResponse`: the folder, its grants (none) and the caller's write access (the owner's).
    static func withAccess(_ folderJSON: String) -> String {
        String(folderJSON.dropLast()) + ",\"access_grants\":[],\"write_access\":true}"
    }

    @Sendable func update(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let raw = try await history.body(request)
        let form = try JSONBody.decode(UpdateForm.self, from: raw)
        let body = try JSONBody.decode(JSONValue.self, from: raw)
        try JSONBody.rejectExtraKeys(body, allowed: ["name", "data", "meta"])
        for key in ["name", "data", "meta"] where body[key] == .null {
            throw APIError(.badRequest, "[ERROR: Error updating folder]")
        }
        let json = try await history.transaction { connection -> String in
            try await history.folders.lockUser(user.userID, on: connection)
            guard let folder = try await history.folders.rows(userID: user.userID, only: id, on: connection).first else {
                throw APIError.notFound
            }
            if let name = form.name,
                try await history.folders.nameTaken(
                    name, parentID: folder.parentID, userID: user.userID, excluding: id, on: connection)
            {
                throw Self.exists
            }
            try await history.folders.update(
                id: id, userID: user.userID, name: form.name, meta: form.meta.map(JSONValue.object),
                data: form.data.map(JSONValue.object), now: ChatHistory.now(), on: connection)
            try await history.publish("folder.updated", actor: user.userID, data: ["folder_id": .string(id)], on: connection)
            return try await history.folders.json(id: id, userID: user.userID, on: connection) ?? "null"
        }
        return JSONResponse.text(json)
    }

    @Sendable func move(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(ParentForm.self, from: try await history.body(request))
        let json = try await history.transaction { connection -> String in
            try await history.folders.lockUser(user.userID, on: connection)
            let folders = try await history.folders.rows(userID: user.userID, on: connection)
            guard let folder = folders.first(where: { $0.id == id }) else { throw APIError.notFound }
            if try await history.folders.nameTaken(
                folder.name, parentID: form.parentID, userID: user.userID, excluding: id, on: connection)
            {
                throw Self.exists
            }
            if let parent = form.parentID, FolderTree.subtree(of: id, parents: FolderTree.parents(folders)).contains(parent) {
                throw Self.intoItself
            }
            try await history.folders.setParent(
                ids: [id], parentID: form.parentID, userID: user.userID, now: ChatHistory.now(), on: connection)
            try await history.publish(
                "folder.parent_updated", actor: user.userID,
                data: ["folder_id": .string(id), "parent_id": form.parentID.map(JSONValue.string) ?? .null], on: connection)
            return try await history.folders.json(id: id, userID: user.userID, on: connection) ?? "null"
        }
        return JSONResponse.text(json)
    }

    @Sendable func expand(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(ExpandedForm.self, from: try await history.body(request))
        let json = try await history.transaction { connection -> String? in
            guard try await history.folders.exists(id: id, userID: user.userID, on: connection) else { return nil }
            try await history.folders.setExpanded(
                id: id, userID: user.userID, expanded: form.isExpanded, now: ChatHistory.now(), on: connection)
            return try await history.folders.json(id: id, userID: user.userID, on: connection)
        }
        guard let json else { throw APIError.notFound }
        return JSONResponse.text(json)
    }

    /// Folder sharing is not offered: an empty grant list is accepted (there is nothing to clear), any grant
    /// is refused as the real server refuses audiences a user may not share with.
    @Sendable func updateAccess(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(AccessGrantsForm.self, from: try await history.body(request))
        guard let json = try await history.folders.json(id: id, userID: user.userID) else { throw APIError.notFound }
        guard form.accessGrants.isEmpty else { throw SharingPolicy.audience }
        return JSONResponse.text(String(json.dropLast()) + ",\"access_grants\":[]}")
    }

    /// Marks the caller's chats in the folder and its subfolders as read.
    @Sendable func markRead(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let (ids, updated, counts) = try await history.transaction { connection -> ([String], Int, [String: Int]) in
            let ids = try await history.folders.subtree(of: id, userID: user.userID, on: connection)
            guard !ids.isEmpty else { throw APIError.notFound }
            let updated = try await history.chats.markRead(folderIDs: ids, userID: user.userID, on: connection)
            return (ids, updated, try await history.folders.unreadTotals(userID: user.userID, on: connection))
        }
        return JSONResponse.text(
            OrderedJSON.object([
                "folder_id": .string(id), "folder_ids": .array(ids.map(JSONValue.string)), "updated_count": .int(updated),
                "folder_unread_counts": .object(counts.mapValues(JSONValue.int)),
            ]))
    }

    /// The owner's chats directly in the folder (not pinned, not archived).
    @Sendable func sharedChats(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let page = try JSONBody.queryInt(request.queryValue("page"), name: "page")
        if let page, page < 1 {
            throw APIError.validation([
                ValidationIssue(
                    type: "greater_than_equal", loc: [.string("query"), .string("page")],
                    msg: "Input should be greater than or equal to 1", input: .string(String(page)),
                    ctx: .object(["ge": .int(1)]))
            ])
        }
        guard try await history.folders.json(id: id, userID: user.userID) != nil else { throw APIError.notFound }
        let limit = page == nil ? 60 : 10
        let offset = try ChatHistory.offset(page: page, size: limit)
        let (chats, total) = try await history.chats.folderShareList(
            folderID: id, userID: user.userID, ownerName: user.name, limit: limit, offset: offset)
        var body = "{\"chats\":\(chats),\"folder_permission\":\"write\""
        if page != nil { body += ",\"total\":\(total),\"has_more\":\(total - offset > limit)" }
        return JSONResponse.text(body + "}")
    }

    /// Deletes the folder and its subfolders; their chats go too unless `delete_contents=false`, when they
    /// move to the top level.
    @Sendable func delete(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let deleteContents = try JSONBody.queryBool(
            request.queryValue("delete_contents"), name: "delete_contents", default: true)
        try await history.transaction { connection in
            try await history.folders.lockUser(user.userID, on: connection)
            let ids = try await history.folders.subtree(of: id, userID: user.userID, on: connection)
            guard !ids.isEmpty else { throw APIError.notFound }
            if deleteContents {
                let removed = try await history.chats.delete(userID: user.userID, inFolders: ids, on: connection)
                try await history.publishChats(
                    "chat.deleted", chatIDs: removed, ownerID: user.userID, actor: user.userID, on: connection)
            } else {
                try await history.chats.clearFolders(ids, userID: user.userID, on: connection)
            }
            try await history.folders.delete(ids: ids, userID: user.userID, on: connection)
            try await history.publish(
                "folder.deleted", actor: user.userID,
                data: ["folder_ids": .array(ids.map(JSONValue.string)), "delete_contents": .bool(deleteContents)],
                on: connection)
        }
        return JSONResponse.text("true")
    }
}
