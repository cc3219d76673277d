// /api/v1/users: the admin's user list and user edits, and each user's own settings, info and permissions.
import Foundation
import HTTPTypes
import Hummingbird
import PostgresNIO
import Shared

struct UsersController {
    let accounts: Accounts
    static let pageSize = 30
    static let userNotFound = APIError(.badRequest, ErrorText.notFound)
    static let actionProhibited = APIError(.forbidden, "The requested action has been restricted as a security measure.")

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: list)
        routes.get("all", use: all)
        routes.get("search", use: search)
        routes.get("groups", use: ownGroups)
        routes.get("permissions", use: ownPermissions)
        routes.get("default/permissions", use: defaultPermissions)
        routes.post("default/permissions", use: updateDefaultPermissions)
        routes.get("default/permissions/defaults", use: builtInPermissions)
        routes.get("user/settings", use: settings)
        routes.post("user/settings/update", use: updateSettings)
        routes.get("user/status", use: status)
        routes.post("user/status/update", use: updateStatus)
        routes.get("user/variables", use: variables)
        routes.post("user/variables/update", use: updateVariables)
        routes.get("user/info", use: info)
        routes.post("user/info/update", use: updateInfo)
        routes.get(":user_id", use: user)
        routes.get(":user_id/info", use: userInfo)
        routes.get(":user_id/active", use: active)
        routes.get(":user_id/groups", use: userGroups)
        routes.get(":user_id/profile/image", use: profileImage)
        routes.post(":user_id/update", use: update)
        routes.delete(":user_id", use: delete)
        return routes
    }

    struct ListQuery {
        var query: String?
        var orderBy: String?
        var ascending: Bool
        var page: Int

        init(_ request: Request) throws {
            let parameters = request.uri.queryParameters
            query = parameters["query"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
            orderBy = parameters["order_by"].map(String.init)
            ascending = parameters["direction"].map(String.init) == "asc"
            page = try max(1, JSONBody.queryInt(parameters["page"].map(String.init), name: "page") ?? 1)
        }

        /// Users before the page. A page so far out that its offset would overflow (and trap) reads from the
        /// last representable page instead: past the end, so empty.
        var offset: Int { (min(page, Int.max / UsersController.pageSize) - 1) * UsersController.pageSize }
    }

    @Sendable func list(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let query = try ListQuery(request)
        let (users, total) = try await accounts.users.list(
            query: query.query, orderBy: query.orderBy, ascending: query.ascending, limit: Self.pageSize,
            offset: query.offset)
        let groupIDs = try await accounts.groups.groupIDs(ofUsers: users.map(\.id))
        let items = users.map { $0.json(adding: ["group_ids": .array((groupIDs[$0.id] ?? []).map(JSONValue.string))]) }
        return try JSONResponse.make(JSONValue.object(["users": .array(items), "total": .int(total)]))
    }

    @Sendable func all(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let (users, total) = try await accounts.users.list(query: nil, orderBy: nil, ascending: false, limit: nil, offset: 0)
        return try JSONResponse.make(JSONValue.object(["users": .array(users.map { $0.info() }), "total": .int(total)]))
    }

    @Sendable func search(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireVerified()
        let query = try ListQuery(request)
        let (users, total) = try await accounts.users.list(
            query: query.query, orderBy: query.orderBy, ascending: query.ascending, limit: Self.pageSize,
            offset: query.offset)
        return try JSONResponse.make(JSONValue.object(["users": .array(users.map { $0.info() }), "total": .int(total)]))
    }

    @Sendable func ownGroups(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireVerified()
        return try await groupsResponse(userID: identity.userID)
    }

    @Sendable func userGroups(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        return try await groupsResponse(userID: try context.parameters.require("user_id"))
    }

    private func groupsResponse(userID: String) async throws -> Response {
        var groups = try await accounts.groups.groups(ofUser: userID)
        for index in groups.indices { groups[index].memberCount = nil }
        return try JSONResponse.make(groups)
    }

    @Sendable func ownPermissions(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireVerified()
        return try JSONResponse.make(try await accounts.permissions(ofUser: identity.userID))
    }

    @Sendable func defaultPermissions(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        return try JSONResponse.make(try await accounts.config.fresh().permissions)
    }

    @Sendable func builtInPermissions(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        return try JSONResponse.make(Permissions.defaults)
    }

    @Sendable func updateDefaultPermissions(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let body = try await JSONBody.decode(JSONValue.self, from: request)
        guard case .object(let object) = body else {
            throw APIError.validation([
                ValidationIssue(type: "model_attributes_type", loc: [.string("body")], msg: "Input should be a valid dictionary or object to extract fields from", input: body)
            ])
        }
        for section in ["workspace", "sharing", "access_grants", "chat", "features", "settings"] {
            guard let value = object[section] else {
                throw APIError.validation([
                    ValidationIssue(type: "missing", loc: [.string("body"), .string(section)], msg: "Field required", input: body)
                ])
            }
            guard case .object = value else {
                throw APIError.validation([
                    ValidationIssue(
                        type: "model_attributes_type", loc: [.string("body"), .string(section)],
                        msg: "Input should be a valid dictionary or object to extract fields from", input: value)
                ])
            }
        }
        let permissions = Permissions.fill(body)
        try await accounts.saveConfig([AdminConfig.userPermissionsKey: permissions], actor: admin.userID)
        return try JSONResponse.make(permissions, headers: Invalidation.all)
    }

    /// The stored settings (`raw=true`), or with the admin's default interface settings under the user's `ui`.
    @Sendable func settings(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireVerified()
        let raw = try JSONBody.queryBool(request.queryValue("raw"), name: "raw", default: false)
        guard let user = try await accounts.users.find(id: identity.userID) else { throw Self.userNotFound }
        var settings = user.settings?.objectValue
        if !raw, case .object(let defaults)? = try await accounts.config.current().values["DEFAULT_INTERFACE_SETTINGS"],
            !defaults.isEmpty
        {
            var merged = settings ?? [:]
            merged["ui"] = Self.deepMerge(.object(defaults), settings?["ui"] ?? .object([:]))
            settings = merged
        }
        return JSONResponse.text(Self.settingsText(settings))
    }

    /// Defaults under stored values: objects merge, a stored null keeps the default.
    static func deepMerge(_ base: JSONValue, _ top: JSONValue) -> JSONValue {
        top == .null ? base : base.merging(top.droppingNulls)
    }

    /// `UserSettings` as the original writes it: `ui` first (an empty one when missing), then the other keys.
    static func settingsText(_ settings: [String: JSONValue]?) -> String {
        guard let settings else { return "null" }
        let rest = settings.filter { $0.key != "ui" }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        return OrderedJSON.object([("ui", settings["ui"] ?? .object([:]))] + rest)
    }

    /// Top-level keys replace; `ui` is patched key by key (a null value removes the key).
    @Sendable func updateSettings(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireVerified()
        var updates = try await JSONBody.object(request)
        guard let user = try await accounts.users.find(id: identity.userID) else { throw Self.userNotFound }
        var settings = user.settings?.objectValue ?? ["ui": .object([:])]
        if !identity.isAdmin { try await withoutForbiddenKeys(&updates, userID: identity.userID) }
        for (key, value) in updates where key != "ui" { settings[key] = value }
        if case .object(let uiPatch)? = updates["ui"] {
            var ui = settings["ui"]?.objectValue ?? [:]
            for (key, value) in uiPatch { ui[key] = value == .null ? nil : value }
            settings["ui"] = .object(ui)
        }
        try await accounts.users.setJSON("settings", value: .object(settings), userID: identity.userID)
        return JSONResponse.text(Self.settingsText(settings))
    }

    /// `InterfaceSettings`' fields: what a user without `settings.interface` may not change.
    static let interfaceKeys: Set<String> = [
        "autoTags", "autoFollowUps", "highContrastMode", "detectArtifacts", "responseAutoCopy", "showUsername",
        "showUpdateToast", "showChangelog", "showEmojiInCall", "voiceInterruption", "displayMultiModelResponsesInTabs",
        "chatFadeStreamingText", "richTextInput", "showFormattingToolbar", "insertPromptAsRichText", "promptAutocomplete",
        "insertSuggestionPrompt", "keepFollowUpPrompts", "insertFollowUpPrompt", "regenerateMenu", "enableMessageQueue",
        "largeTextAsFile", "copyFormatted", "collapseCodeBlocks", "renderMarkdownInUserMessages",
        "renderMarkdownInAssistantMessages", "expandDetails", "chatHoverPreview", "renderMarkdownInPreviews", "chatBubble",
        "widescreenMode", "splitLargeChunks", "scrollOnBranchChange", "scrollOnResponseGeneration",
        "showFilesOnTerminalSelect", "temporaryChatByDefault", "userLocation", "showChatTitleInTab",
        "iframeSandboxAllowScripts", "iframeSandboxAllowSameOrigin", "iframeSandboxAllowForms",
        "iframeSandboxAllowDownloads", "terminalPreviewAllowSameOrigin", "stylizedPdfExport", "hapticFeedback",
        "ctrlEnterToSend", "showFloatingActionButtons", "imageCompression", "imageCompressionInChannels", "landingPageMode",
        "chatDirection", "terminalFileDisplay", "defaultUploadContext", "webSearch", "models", "backgroundImageUrl",
        "fontFamily", "textScale", "title", "imageCompressionSize", "floatingActionButtons",
    ]

    /// The original's rules for users: interface keys only with `settings.interface`, `ui.system` only with
    /// `chat.controls` and `chat.system_prompt`, `ui.toolServers` only with `features.direct_tool_servers`,
    /// notification webhooks only with `features.webhooks`; the rest of the update stands.
    func withoutForbiddenKeys(_ updates: inout [String: JSONValue], userID: String) async throws {
        let permissions = try await accounts.permissions(ofUser: userID)
        if var ui = updates["ui"]?.objectValue {
            if !permissions.allows("settings.interface") { ui = ui.filter { !Self.interfaceKeys.contains($0.key) } }
            if ui["system"] != nil, !(permissions.allows("chat.controls") && permissions.allows("chat.system_prompt")) {
                ui["system"] = nil
            }
            if ui["toolServers"] != nil, !permissions.allows("features.direct_tool_servers") { ui["toolServers"] = nil }
            updates["ui"] = .object(ui)
        }
        let webhook = updates["ui"]?["notifications"]?["webhook_url"] != nil
        if updates["notifications"] != nil || webhook, !permissions.allows("features.webhooks") {
            updates["notifications"] = nil
            if var ui = updates["ui"]?.objectValue, var notifications = ui["notifications"]?.objectValue {
                notifications["webhook_url"] = nil
                ui["notifications"] = .object(notifications)
                updates["ui"] = .object(ui)
            }
        }
    }

    @Sendable func info(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireVerified()
        guard let user = try await accounts.users.find(id: identity.userID) else { throw Self.userNotFound }
        return try JSONResponse.make(user.info ?? .null)
    }

    @Sendable func updateInfo(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireVerified()
        let updates = try await JSONBody.object(request)
        guard let user = try await accounts.users.find(id: identity.userID) else { throw Self.userNotFound }
        var info = user.info?.objectValue ?? [:]
        info.merge(updates) { _, new in new }
        try await accounts.users.setJSON("info", value: .object(info), userID: identity.userID)
        return try JSONResponse.make(JSONValue.object(info))
    }

    // MARK: Status and variables

    func statusEnabled() async throws {
        guard try await accounts.config.current().bool("ENABLE_USER_STATUS") else { throw Self.actionProhibited }
    }

    /// The caller's whole user record (`UserModel`), which carries the status fields.
    @Sendable func status(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireVerified()
        try await statusEnabled()
        guard let user = try await accounts.users.find(id: identity.userID) else { throw Self.userNotFound }
        return try JSONResponse.make(user)
    }

    struct StatusForm: Decodable {
        var statusEmoji: String?
        var statusMessage: String?
        var statusExpiresAt: Int?

        enum CodingKeys: String, CodingKey {
            case statusEmoji = "status_emoji"
            case statusMessage = "status_message"
            case statusExpiresAt = "status_expires_at"
        }
    }

    /// Sets the status fields sent with a value (null leaves a field as it is, as the original).
    @Sendable func updateStatus(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireVerified()
        try await statusEnabled()
        let form = try await JSONBody.decode(StatusForm.self, from: request)
        try await accounts.users.setStatus(
            emoji: form.statusEmoji, message: form.statusMessage, expiresAt: form.statusExpiresAt, userID: identity.userID)
        guard let user = try await accounts.users.find(id: identity.userID) else { throw Self.userNotFound }
        return try JSONResponse.make(user)
    }

    static func variablesText(_ variables: [String: JSONValue]) -> String {
        OrderedJSON.object([("variables", .object(variables.filter { $0.value.stringValue != nil }))])
    }

    @Sendable func variables(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireVerified()
        let stored = try await accounts.users.variables(userID: identity.userID)?.objectValue ?? [:]
        return JSONResponse.text(Self.variablesText(stored))
    }

    /// Replaces the variables: keys `^[a-z][a-z0-9_]*$`, string values of at most 20,000 characters, 100,000 in all.
    @Sendable func updateVariables(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireVerified()
        let form = try await JSONBody.object(request)
        let sent = form["variables"] ?? .object([:])
        guard case .object(let variables) = sent else {
            throw APIError.validation([
                ValidationIssue(
                    type: "dict_type", loc: [.string("body"), .string("variables")], msg: "Input should be a valid dictionary",
                    input: sent)
            ])
        }
        guard sent.jsonText.count <= 100_000 else { throw APIError(.badRequest, "User variables are too large.") }
        var clean: [String: JSONValue] = [:]
        for key in variables.keys.sorted() {
            let value = variables[key]!
            guard let first = key.unicodeScalars.first, ("a"..."z").contains(first),
                key.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" })
            else { throw APIError(.badRequest, "Invalid user variable key: \(key)") }
            guard let text = value.stringValue else { throw APIError(.badRequest, "User variable must be a string: \(key)") }
            let normalized = text.replacingOccurrences(of: "\r\n", with: "\n")
            guard normalized.count <= 20_000 else { throw APIError(.badRequest, "User variable is too long: \(key)") }
            clean[key] = .string(normalized)
        }
        try await accounts.users.setJSON("variables", value: .object(clean), userID: identity.userID)
        return JSONResponse.text(Self.variablesText(clean))
    }

    @Sendable func user(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let id = try context.parameters.require("user_id")
        guard let user = try await accounts.users.find(id: id) else { throw Self.userNotFound }
        let summary = try await groupSummary(ofUser: id)
        return try JSONResponse.make(user.json(adding: ["groups": summary, "is_active": .bool(user.isActive)]))
    }

    @Sendable func userInfo(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireVerified()
        let id = try context.parameters.require("user_id")
        guard let user = try await accounts.users.find(id: id) else { throw Self.userNotFound }
        return try JSONResponse.make(user.info(groups: try await groupSummary(ofUser: id), active: user.isActive))
    }

    /// `[{id, name}]` of the user's groups, as the two user-detail routes show them.
    private func groupSummary(ofUser id: String) async throws -> JSONValue {
        let groups = try await accounts.groups.groups(ofUser: id)
        return .array(groups.map { .object(["id": .string($0.id), "name": .string($0.name)]) })
    }

    @Sendable func active(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireVerified()
        let user = try await accounts.users.find(id: try context.parameters.require("user_id"))
        return try JSONResponse.make(["active": user?.isActive ?? false])
    }

    /// Data URLs are decoded; web URLs redirect; anything else is the default avatar.
    @Sendable func profileImage(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireVerified()
        guard let user = try await accounts.users.find(id: try context.parameters.require("user_id")) else {
            throw Self.userNotFound
        }
        let url = user.profileImageURL
        if url.hasPrefix("http") {
            return Response(status: .found, headers: [.location: url])
        }
        if url.hasPrefix("data:image"), let comma = url.firstIndex(of: ",") {
            let header = url[url.startIndex..<comma]
            let media = String(header.dropFirst(5).split(separator: ";").first ?? "").lowercased()
            if ["image/png", "image/jpeg", "image/gif", "image/webp"].contains(media),
                let bytes = Data(base64Encoded: String(url[url.index(after: comma)...]))
            {
                return Response(
                    status: .ok,
                    headers: [.contentType: media, .contentDisposition: "inline", HTTPField.Name("X-Content-Type-Options")!: "nosniff"],
                    body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
            }
        }
        return Response(status: .found, headers: [.location: "/user.png"])
    }

    struct UpdateForm: Decodable {
        var role: String?
        var name: String?
        var email: String?
        var profileImageURL: String?
        var password: String?
        enum CodingKeys: String, CodingKey {
            case role, name, email, password
            case profileImageURL = "profile_image_url"
        }
    }

    @Sendable func update(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = try context.parameters.require("user_id")
        let form = try await JSONBody.decode(UpdateForm.self, from: request)
        if let url = form.profileImageURL, !AuthsController.validImageURL(url) {
            throw APIError.validation([
                ValidationIssue(
                    type: "value_error", loc: [.string("body"), .string("profile_image_url")],
                    msg: "Value error, Invalid profile image URL: must be a known internal path, an HTTP(S) URL with a host, or a data:image URI (png/jpeg/gif/webp).",
                    input: .string(url), ctx: .object(["error": .object([:])]))
            ])
        }
        if let primary = try await accounts.users.primaryAdminID(), primary == id {
            if admin.userID != id { throw Self.actionProhibited }
            if let role = form.role, role != "admin" { throw Self.actionProhibited }
        }
        let hash: String?
        if let password = form.password, !password.isEmpty {
            try Accounts.checkPassword(password)
            hash = try await accounts.hashPassword(password)
        } else {
            hash = nil
        }
        let accounts = self.accounts
        let user = try await accounts.postgres.withTransaction(logger: accounts.logger) { connection -> UserRecord in
            guard let existing = try await accounts.users.find(id: id, on: connection) else { throw Self.userNotFound }
            let email = form.email?.lowercased()
            if let email, email != existing.email, try await accounts.users.emailExists(email, on: connection, except: id) {
                throw APIError(.badRequest, AuthsController.emailTaken)
            }
            if let hash {
                try await accounts.users.setPassword(userID: id, hash: hash, on: connection)
            }
            try await accounts.users.update(
                userID: id, role: form.role, name: form.name, email: email, profileImageURL: form.profileImageURL,
                on: connection)
            try await accounts.publish(
                "user.updated", actor: admin.userID,
                data: ["user_id": .string(id), "role": .string(form.role ?? existing.role)], on: connection)
            guard let updated = try await accounts.users.find(id: id, on: connection) else { throw Self.userNotFound }
            return updated
        }
        return try JSONResponse.make(user, headers: Invalidation.user(id))
    }

    @Sendable func delete(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = try context.parameters.require("user_id")
        if id == admin.userID { throw Self.actionProhibited }
        if let primary = try await accounts.users.primaryAdminID(), primary == id { throw Self.actionProhibited }
        let accounts = self.accounts
        try await accounts.postgres.withTransaction(logger: accounts.logger) { connection in
            guard try await accounts.users.find(id: id, on: connection) != nil else { return }
            try await accounts.users.delete(userID: id, on: connection)
            try await accounts.publish("user.deleted", actor: admin.userID, data: ["user_id": .string(id)], on: connection)
        }
        return try JSONResponse.make(true, headers: Invalidation.user(id))
    }

}
