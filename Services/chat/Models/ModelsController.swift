// `/api/models` (the merged list a user may use), `/api/models/base` (admins: the providers' own lists) and
// `/api/v1/models/*` (custom models: create, list, get, update, toggle, access, delete, export, import, tags).
import Foundation
import Hummingbird
import HTTPTypes
import NIOCore
import PostgresNIO
import Shared

struct ModelForm: Decodable {
    var id: String
    var baseModelID: String?
    var name: String
    var meta: [String: JSONValue]
    var params: [String: JSONValue]
    var accessGrants: [JSONValue]?
    var isActive: Bool?
    var commitMessage: String?

    enum CodingKeys: String, CodingKey {
        case id, name, meta, params
        case baseModelID = "base_model_id"
        case accessGrants = "access_grants"
        case isActive = "is_active"
        case commitMessage = "commit_message"
    }

    /// The id rule of the form (`^\S+$`): FastAPI's 422 otherwise.
    func checkedID() throws -> String {
        guard !id.isEmpty, !id.contains(where: \.isWhitespace) else {
            throw APIError.validation([
                ValidationIssue(
                    type: "string_pattern_mismatch", loc: [.string("body"), .string("id")],
                    msg: "String should match pattern '^\\S+$'", input: .string(id), ctx: .object(["pattern": .string("^\\S+$")]))
            ])
        }
        return id
    }
}

struct ModelsController {
    let registry: ModelRegistry
    let policies: PolicyCache
    let owners: OwnerLookup
    var store: CustomModelStore { registry.store }

    static let idTaken = APIError(.unauthorized, "Uh-oh! This model id is already registered. Please choose another model id string.")
    static let idTooLong = APIError(.badRequest, "The model id is too long. Please make sure your model id is less than 256 characters long.")

    /// `/api/models` and `/api/models/base`.
    var listRoutes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: models)
        routes.get("base", use: baseModels)
        return routes
    }

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: models)
        routes.get("list", use: list)
        routes.get("all", use: all)
        routes.get("base", use: baseRows)
        routes.get("base/tags", use: baseTags)
        routes.get("tags", use: tags)
        routes.post("create", use: create)
        routes.get("export", use: export)
        routes.post("import", use: importModels)
        routes.get("model/profile/image", use: profileImage)
        routes.get("model", use: get)
        routes.post("model/toggle", use: toggle)
        routes.post("model/update", use: update)
        routes.post("model/access/update", use: updateAccess)
        routes.post("model/delete", use: delete)
        routes.get("model/history", use: historyList)
        routes.get("model/history/:history_id", use: historyEntry)
        routes.delete("model/history/:history_id", use: deleteHistory)
        routes.post("model/update/version", use: restoreVersion)
        routes.delete("delete/all", use: deleteAll)
        return routes
    }

    // MARK: The merged list

    @Sendable func models(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let refresh = try JSONBody.queryBool(request.queryValue("refresh"), name: "refresh", default: false)
        return JSONResponse.text(try await registry.listJSON(for: user, refresh: refresh))
    }

    @Sendable func baseModels(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let items = try await registry.bases.models().map(\.entry.text)
        return JSONResponse.text("{\"data\":" + OrderedJSON.array(items) + "}")
    }

    // MARK: Custom models

    func canRead(_ row: CustomModel, _ user: Identity) -> Bool {
        (user.isAdmin && registry.adminBypass) || row.readable(by: user)
    }

    func canWrite(_ row: CustomModel, _ user: Identity) -> Bool {
        (user.isAdmin && registry.adminBypass) || row.writable(by: user)
    }

    /// `ModelAccessResponse`: params only for writers, the owner (in lists), `write_access`.
    func accessJSON(_ row: CustomModel, user: Identity, owner: UserSummary?, inList: Bool) -> String {
        let write = canWrite(row, user)
        var object = row.json(params: write ? nil : OrderedObject(), droppingImage: inList)
        object["user"] = owner.flatMap { JSONValue.parse($0.jsonText) } ?? .null
        object["write_access"] = .bool(write)
        return object.text
    }

    @Sendable func list(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        var rows = try await store.all().filter { $0.baseModelID != nil }
        if !(user.isAdmin && registry.adminBypass) { rows = rows.filter { $0.readable(by: user) } }
        switch request.queryValue("view_option") {
        case "created": rows = rows.filter { $0.userID == user.userID }
        case "shared": rows = rows.filter { $0.userID != user.userID }
        default: break
        }
        if let query = request.queryValue("query")?.lowercased(), !query.isEmpty {
            let owners = try await self.owners.owners(Set(rows.map(\.userID)), caller: user)
            rows = rows.filter { row in
                row.name.lowercased().contains(query) || (row.baseModelID?.lowercased().contains(query) ?? false)
                    || owners[row.userID].map { $0.name.lowercased().contains(query) || $0.email.lowercased().contains(query) } ?? false
            }
        }
        if let tag = request.queryValue("tag")?.lowercased(), !tag.isEmpty {
            rows = rows.filter { row in
                Self.tagNames(row.meta["tags"]).contains { $0.lowercased() == tag }
            }
        }
        let order = WorkspaceList.order(request)
        if request.queryValue("order_by") != nil || (user.isAdmin && registry.adminBypass) {
            rows.sort { a, b in
                let ascending = order.direction == "ASC"
                switch order.column {
                case "name": return ascending ? a.name < b.name : a.name > b.name
                case "created_at": return ascending ? a.createdAt < b.createdAt : a.createdAt > b.createdAt
                default: return ascending ? a.updatedAt < b.updatedAt : a.updatedAt > b.updatedAt
                }
            }
        }
        let page = max(1, try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1)
        let (skip, overflow) = (page - 1).multipliedReportingOverflow(by: 30)
        let shown = Array(rows.dropFirst(overflow ? rows.count : min(rows.count, skip)).prefix(30))
        let owners = try await self.owners.owners(Set(shown.map(\.userID)), caller: user)
        let items = shown.map { accessJSON($0, user: user, owner: owners[$0.userID], inList: true) }
        return JSONResponse.text("{\"items\":" + OrderedJSON.array(items) + ",\"total\":\(rows.count)}")
    }

    static func tagNames(_ value: JSONValue?) -> [String] {
        ModelRegistry.normalizedTags(value ?? .array([])).compactMap { $0["name"]?.stringValue }
    }

    @Sendable func all(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        return JSONResponse.text(OrderedJSON.array(try await store.all().map { $0.json().text }))
    }

    @Sendable func baseRows(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        var rows = try await store.all().filter { $0.baseModelID == nil }
        if let tag = request.queryValue("tag") { rows = rows.filter { Self.tagNames($0.meta["tags"]).contains(tag) } }
        return JSONResponse.text(OrderedJSON.array(rows.map { $0.json().text }))
    }

    @Sendable func baseTags(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let names = Set(try await store.all().filter { $0.baseModelID == nil }.flatMap { Self.tagNames($0.meta["tags"]) })
        return JSONResponse.text(JSONValue.array(names.sorted().map(JSONValue.string)).jsonText)
    }

    @Sendable func tags(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let rows = try await store.all().filter { $0.baseModelID != nil && canRead($0, user) }
        let names = Set(rows.flatMap { Self.tagNames($0.meta["tags"]) })
        return JSONResponse.text(JSONValue.array(names.sorted().map(JSONValue.string)).jsonText)
    }

    /// A caller allowed `permission` (`workspace.models`, ...): admins always; 401 "401 Unauthorized" otherwise.
    func requirePermission(_ permission: String, _ user: Identity) async throws -> UserPolicy? {
        guard !user.isAdmin else { return nil }
        let policy = try await policies.policy(user.userID)
        guard policy.allows(permission) else { throw APIError.unauthorized }
        return policy
    }

    static let modelSharing = SharingPolicy(share: "sharing.models", makePublic: "sharing.public_models")

    static func cleanedMeta(_ meta: [String: JSONValue]) -> [String: JSONValue] {
        var meta = meta
        if let tags = meta["tags"] { meta["tags"] = .array(ModelRegistry.normalizedTags(tags)) }
        if let url = meta["profile_image_url"]?.stringValue, !ModelsController.allowedImage(url) { meta["profile_image_url"] = .null }
        return meta
    }

    static func allowedImage(_ url: String) -> Bool {
        if ["", "/user.png", "/favicon.png", "/static/favicon.png"].contains(url) { return true }
        if url.hasPrefix("/api/v1/users/") && url.hasSuffix("/profile/image") { return true }
        if url.hasPrefix("http://") || url.hasPrefix("https://") { return URL(string: url)?.host != nil }
        return ["png", "jpeg", "gif", "webp"].contains { url.hasPrefix("data:image/\($0);base64,") }
    }

    @Sendable func create(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let policy = try await requirePermission("workspace.models", user)
        let form = try await JSONBody.decode(ModelForm.self, from: request, limit: 16 << 20)
        let id = try form.checkedID()
        guard id.count <= 256 else { throw Self.idTooLong }
        let baseID = form.baseModelID == id ? nil : form.baseModelID
        if try await store.model(id) != nil { throw Self.idTaken }
        if !user.isAdmin {
            guard baseID != nil else { throw APIError.unauthorized }
            let bases = try await registry.bases.models()
            if bases.contains(where: { $0.id == id || $0.id.split(separator: ":").first.map(String.init) == id }) {
                throw Self.idTaken
            }
        }
        let grants = Self.modelSharing.allowed(AccessGrant.normalize(form.accessGrants), user: user, policy: policy)
        let now = ChatHistory.now()
        var row = CustomModel(
            id: id, userID: user.userID, baseModelID: baseID, name: form.name, params: form.params,
            meta: Self.cleanedMeta(form.meta), isActive: form.isActive ?? true, versionID: nil, createdAt: now, updatedAt: now,
            grants: [])
        try await store.write { connection in
            row.versionID = try await store.version(of: row, previous: nil, user: user.userID, message: form.commitMessage, on: connection)
            guard try await store.insertNew(row, on: connection) else { throw Self.idTaken }
            try await GrantStore(logger: store.logger).replace(grants, type: "model", id: id, now: now, on: connection)
        }
        guard let saved = try await store.model(id) else { throw ChatHistory.failed }
        return JSONResponse.text(saved.json().text)
    }

    /// The row of query `id`, or `missing` when there is none.
    func row(_ request: Request, missing: APIError) async throws -> CustomModel {
        guard let id = request.queryValue("id"), let row = try await store.model(id) else { throw missing }
        return row
    }

    @Sendable func get(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let row = try await row(request, missing: .notFound)
        guard canWrite(row, user) || row.granted("read", to: user) else { throw APIError.accessProhibited }
        return JSONResponse.text(accessJSON(row, user: user, owner: nil, inList: false))
    }

    @Sendable func toggle(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        var row = try await row(request, missing: .notFoundUnauthorized)
        guard user.isAdmin || row.writable(by: user) else { throw APIError.unauthorized }
        row.isActive.toggle()
        row.updatedAt = ChatHistory.now()
        try await store.write { try await store.upsert(row, on: $0) }
        return JSONResponse.text(try await store.model(row.id)?.json().text ?? row.json().text)
    }

    @Sendable func update(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let body = Data(buffer: try await JSONBody.collect(request, limit: 16 << 20))
        let form = try JSONBody.decode(ModelForm.self, from: body)
        let id = try form.checkedID()
        guard var row = try await store.model(id) else { throw APIError.notFoundUnauthorized }
        guard user.isAdmin || row.writable(by: user) else { throw APIError(.badRequest, ErrorText.accessProhibited) }
        let sent = JSONValue.parse(String(decoding: body, as: UTF8.self))
        if sent?["base_model_id"] != nil {
            let baseID = form.baseModelID == id ? nil : form.baseModelID
            if !user.isAdmin, row.baseModelID != nil, baseID == nil { throw APIError.unauthorized }
            row.baseModelID = baseID
        }
        var meta = Self.cleanedMeta(form.meta)
        for kept in ["profile_image_url", "voice_avatar", "background_image_url"] where form.meta[kept] == nil {
            meta[kept] = row.meta[kept]
        }
        row.name = form.name
        row.meta = meta
        row.params = form.params
        if let active = form.isActive, sent?["is_active"] != nil { row.isActive = active }
        row.updatedAt = ChatHistory.now()
        try await store.write { connection in
            row.versionID = try await store.version(
                of: row, previous: row.versionID, user: user.userID, message: form.commitMessage, on: connection)
            try await store.upsert(row, on: connection)
        }
        return JSONResponse.text(try await store.model(id)?.json().text ?? row.json().text)
    }

    struct AccessForm: Decodable {
        var id: String
        var name: String?
        var accessGrants: [JSONValue]

        enum CodingKeys: String, CodingKey {
            case id, name
            case accessGrants = "access_grants"
        }
    }

    @Sendable func updateAccess(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let form = try await JSONBody.decode(AccessForm.self, from: request)
        guard !form.id.isEmpty, !form.id.contains(where: \.isWhitespace) else { throw APIError.notFoundUnauthorized }
        let now = ChatHistory.now()
        var row: CustomModel
        if let existing = try await store.model(form.id) {
            row = existing
            guard user.isAdmin || row.writable(by: user) else { throw APIError(.badRequest, ErrorText.accessProhibited) }
        } else {
            // An admin gives a provider model its own entry, so that users can be granted it.
            guard user.isAdmin else { throw APIError.forbidden }
            row = CustomModel(
                id: form.id, userID: user.userID, baseModelID: nil, name: form.name ?? form.id, params: [:], meta: [:],
                isActive: true, versionID: nil, createdAt: now, updatedAt: now, grants: [])
        }
        let policy = user.isAdmin ? nil : try await policies.policy(user.userID)
        let grants = try Self.modelSharing.validate(
            AccessGrant.normalize(form.accessGrants).filter { $0.principalType != "anyone" }, user: user, policy: policy)
        if AccessGrant.normalize(form.accessGrants).contains(where: { $0.principalType == "anyone" }) {
            throw SharingPolicy.audience
        }
        row.updatedAt = now
        try await store.write { connection in
            try await store.upsert(row, on: connection)
            try await GrantStore(logger: store.logger).replace(grants, type: "model", id: row.id, now: now, on: connection)
        }
        return JSONResponse.text(try await store.model(row.id)?.json().text ?? row.json().text)
    }

    struct IDForm: Decodable { var id: String }

    @Sendable func delete(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let form = try await JSONBody.decode(IDForm.self, from: request)
        guard let row = try await store.model(form.id) else { throw APIError.notFoundUnauthorized }
        guard user.isAdmin || row.writable(by: user) else { throw APIError.unauthorized }
        try await store.write { try await store.delete([row.id], on: $0) }
        return JSONResponse.text("true")
    }

    @Sendable func deleteAll(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        try await store.write { try await store.delete(nil, on: $0) }
        return JSONResponse.text("true")
    }

    @Sendable func export(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        _ = try await requirePermission("workspace.models_export", user)
        var rows = try await store.all().filter { $0.baseModelID != nil }
        if !(user.isAdmin && registry.adminBypass) { rows = rows.filter { $0.writable(by: user) } }
        let ids = request.uri.queryParameters.getAll("ids").map { String($0) }
        if !ids.isEmpty {
            rows = rows.filter { ids.contains($0.id) }
            guard Set(rows.map(\.id)) == Set(ids) else { throw APIError.forbidden }
        }
        return JSONResponse.text(OrderedJSON.array(rows.map { $0.json(extra: [("background_image_data", .null)]).text }))
    }

    struct ImportForm: Decodable { var models: [JSONValue] }

    @Sendable func importModels(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let policy = try await requirePermission("workspace.models_import", user)
        let form = try await JSONBody.decode(ImportForm.self, from: request, limit: 32 << 20)
        let now = ChatHistory.now()
        let bases = try await registry.bases.models()
        try await store.write { connection in
            for item in form.models {
                guard let id = item["id"]?.stringValue, !id.isEmpty, id.count <= 256, !id.contains(where: \.isWhitespace) else {
                    continue
                }
                var baseID = item["base_model_id"]?.stringValue
                if baseID == id { baseID = nil }
                let meta = Self.cleanedMeta(item["meta"]?.objectValue ?? [:])
                let params = item["params"]?.objectValue ?? [:]
                if var row = try await store.model(id) {
                    guard user.isAdmin || row.writable(by: user) else { throw Self.idTaken }
                    if !user.isAdmin, baseID == nil { continue }
                    row.baseModelID = baseID
                    row.name = item["name"]?.stringValue ?? row.name
                    row.meta = row.meta.merging(meta) { _, new in new }
                    row.params = params
                    row.updatedAt = now
                    try await store.upsert(row, on: connection)
                } else {
                    if !user.isAdmin, baseID == nil { continue }
                    if bases.contains(where: { $0.id == id }) { throw Self.idTaken }
                    let row = CustomModel(
                        id: id, userID: user.userID, baseModelID: baseID, name: item["name"]?.stringValue ?? id, params: params,
                        meta: meta, isActive: item["is_active"]?.boolValue ?? true, versionID: nil, createdAt: now,
                        updatedAt: now, grants: [])
                    guard try await store.insertNew(row, on: connection) else { throw Self.idTaken }
                    let grants = Self.modelSharing.allowed(
                        AccessGrant.normalize(item["access_grants"]?.arrayValue), user: user, policy: policy)
                    try await GrantStore(logger: store.logger).replace(grants, type: "model", id: id, now: now, on: connection)
                }
            }
        }
        return JSONResponse.text("true")
    }

    // MARK: History

    static let versionMissing = APIError(.notFound, "Model version not found")

    /// The row whose history the caller may see: its owner, a writer, admins with the bypass.
    func historyRow(_ request: Request, _ user: Identity) async throws -> CustomModel {
        let row = try await row(request, missing: .notFound)
        guard canWrite(row, user) else { throw APIError.forbidden }
        return row
    }

    static let entryColumns = "h.id, h.model_id, h.parent_id, h.user_id, h.commit_message, h.created_at, h.snapshot"

    func entries(_ sql: String, _ bindings: PostgresBindings) async throws -> [(OrderedObject, String)] {
        let rows = try await store.postgres.query(PostgresQuery(unsafeSQL: sql, binds: bindings), logger: store.logger)
        var result: [(OrderedObject, String)] = []
        for try await (id, model, parent, user, message, created, snapshot) in rows.decode(
            (String, String, String?, String, String?, Int, String).self)
        {
            result.append((OrderedObject([
                ("id", .string(id)), ("model_id", .string(model)), ("parent_id", parent.map(JSONValue.string) ?? .null),
                ("user_id", .string(user)), ("commit_message", message.map(JSONValue.string) ?? .null), ("created_at", .int(created)),
            ]), snapshot))
        }
        return result
    }

    func withUsers(_ items: [(OrderedObject, String)], caller: Identity) async throws -> [OrderedObject] {
        let ids = Set(items.compactMap { $0.0["user_id"]?.stringValue })
        let users = try await owners.owners(ids, caller: caller)
        return items.map { item, _ in
            var entry = item
            entry["user"] = (entry["user_id"]?.stringValue).flatMap { users[$0] }.map { .object(["name": .string($0.name)]) } ?? .null
            return entry
        }
    }

    @Sendable func historyList(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let row = try await historyRow(request, user)
        let page = max(1, try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1)
        var bindings = PostgresBindings()
        bindings.append(row.id)
        bindings.append(min(page - 1, Int(Int32.max)) * 20)
        let items = try await entries(
            "SELECT \(Self.entryColumns) FROM chat.model_history h WHERE h.model_id = $1 ORDER BY h.seq DESC LIMIT 20 OFFSET $2",
            bindings)
        return JSONResponse.text("[" + (try await withUsers(items, caller: user)).map(\.text).joined(separator: ",") + "]")
    }

    func entry(_ request: Request, context: ServiceRequestContext) async throws -> (CustomModel, OrderedObject, String) {
        let user = try context.requireVerified()
        let row = try await historyRow(request, user)
        var bindings = PostgresBindings()
        bindings.append(try context.parameters.require("history_id"))
        bindings.append(row.id)
        guard let found = try await entries(
            "SELECT \(Self.entryColumns) FROM chat.model_history h WHERE h.id = $1 AND h.model_id = $2", bindings
        ).first else { throw Self.versionMissing }
        return (row, try await withUsers([found], caller: user)[0], found.1)
    }

    @Sendable func historyEntry(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, entry, snapshot) = try await entry(request, context: context)
        return JSONResponse.text(OrderedJSON.appending(entry.text, raw: [("snapshot", snapshot)]))
    }

    @Sendable func deleteHistory(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (row, entry, _) = try await entry(request, context: context)
        let id = entry["id"]?.stringValue ?? ""
        guard id != row.versionID else { throw APIError(.badRequest, "Cannot delete the current version") }
        try await store.write { connection in
            try await connection.query(
                """
                UPDATE chat.model_history SET parent_id = (SELECT parent_id FROM chat.model_history WHERE id = \(id))
                WHERE parent_id = \(id)
                """, logger: store.logger)
            try await connection.query("DELETE FROM chat.model_history WHERE id = \(id)", logger: store.logger)
        }
        return JSONResponse.text("true")
    }

    struct VersionForm: Decodable {
        var versionID: String
        enum CodingKeys: String, CodingKey { case versionID = "version_id" }
    }

    @Sendable func restoreVersion(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        var row = try await historyRow(request, user)
        let form = try await JSONBody.decode(VersionForm.self, from: request)
        var bindings = PostgresBindings()
        bindings.append(form.versionID)
        bindings.append(row.id)
        guard let (_, snapshotText) = try await entries(
            "SELECT \(Self.entryColumns) FROM chat.model_history h WHERE h.id = $1 AND h.model_id = $2", bindings
        ).first, let snapshot = JSONValue.parse(snapshotText) else { throw Self.versionMissing }
        let baseID = snapshot["base_model_id"]?.stringValue
        if !user.isAdmin, baseID == nil { throw APIError.forbidden }
        let hidden = row.meta["hidden"]
        row.name = snapshot["name"]?.stringValue ?? row.name
        row.baseModelID = baseID
        row.params = snapshot["params"]?.objectValue ?? [:]
        row.meta = snapshot["meta"]?.objectValue ?? [:]
        row.meta["hidden"] = hidden
        row.versionID = form.versionID
        row.updatedAt = ChatHistory.now()
        try await store.write { try await store.upsert(row, on: $0) }
        return JSONResponse.text(try await store.model(row.id)?.json().text ?? row.json().text)
    }

    /// The model's picture: a data URL's bytes, a redirect to a web or `/static` URL, else the default favicon.
    @Sendable func profileImage(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let fallback = Response(status: .found, headers: [.location: "/static/favicon.png"])
        guard let id = request.queryValue("id"), let row = try await store.model(id), canRead(row, user) || registry.modelBypass,
            let url = row.meta["profile_image_url"]?.stringValue, !url.isEmpty
        else { return fallback }
        if url.hasPrefix("http://") || url.hasPrefix("https://") {
            return Response(status: .found, headers: [.location: url])
        }
        if url.hasPrefix("data:image/"), let comma = url.firstIndex(of: ",") {
            let header = url[url.index(url.startIndex, offsetBy: 5)..<comma]
            let mime = String(header.split(separator: ";").first ?? "")
            guard ["image/png", "image/jpeg", "image/gif", "image/webp"].contains(mime),
                let bytes = Data(base64Encoded: String(url[url.index(after: comma)...]))
            else { return fallback }
            return Response(
                status: .ok,
                headers: [
                    .contentType: mime, .contentDisposition: "inline", HTTPField.Name("X-Content-Type-Options")!: "nosniff",
                    .eTag: "\"\(row.updatedAt)\"",
                ], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        if url.hasPrefix("/static/"), !url.contains(".."), !url.contains("%"), !url.contains("?") {
            return Response(status: .found, headers: [.location: url])
        }
        return fallback
    }
}
