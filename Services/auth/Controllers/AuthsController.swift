// /api/v1/auths: sign-up, sign-in, sign-out, the session user, profile, password, API keys, admin config.
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import Hummingbird
import PostgresNIO
import Shared

struct AuthsController {
    let accounts: Accounts

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: sessionUser)
        routes.post("signup", use: signup)
        routes.post("signin", use: signin)
        routes.post("signout", use: signout)
        routes.post("update/profile", use: updateProfile)
        routes.post("update/password", use: updatePassword)
        routes.post("update/timezone", use: updateTimezone)
        routes.get("mfa/status", use: mfaStatus)
        routes.post("add", use: addUser)
        routes.get("admin/details", use: adminDetails)
        routes.get("admin/config", use: getAdminConfig)
        routes.post("admin/config", use: updateAdminConfig)
        routes.post("api_key", use: createAPIKey)
        routes.get("api_key", use: getAPIKey)
        routes.delete("api_key", use: deleteAPIKey)
        return routes
    }

    // MARK: Bodies

    struct SignupForm: Decodable {
        var name: String
        var email: String
        var password: String
        var profileImageURL: String?
        enum CodingKeys: String, CodingKey {
            case name, email, password
            case profileImageURL = "profile_image_url"
        }
    }

    struct SigninForm: Decodable {
        var email: String
        var password: String
    }

    struct AddUserForm: Decodable {
        var name: String
        var email: String
        var password: String
        var profileImageURL: String?
        var role: String?
        enum CodingKeys: String, CodingKey {
            case name, email, password, role
            case profileImageURL = "profile_image_url"
        }
    }

    struct ProfileForm: Decodable {
        var profileImageURL: String
        var name: String
        var bio: String?
        var gender: String?
        var dateOfBirth: String?
        enum CodingKeys: String, CodingKey {
            case name, bio, gender
            case profileImageURL = "profile_image_url"
            case dateOfBirth = "date_of_birth"
        }
    }

    struct PasswordForm: Decodable {
        var password: String
        var newPassword: String
        enum CodingKeys: String, CodingKey {
            case password
            case newPassword = "new_password"
        }
    }

    struct TimezoneForm: Decodable {
        var timezone: String
    }

    /// Every auths route answers an invalid body with one fixed 422, as the real server's auth routes do.
    static func body<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        do {
            return try await JSONBody.decode(type, from: request)
        } catch let error as APIError where error.status == .unprocessableContent {
            throw invalidRequest
        }
    }

    static var invalidRequest: APIError { APIError(.unprocessableContent, "Invalid authentication request.") }
    static let emailTaken =
        "Uh-oh! This email is already registered. Sign in with your existing account or choose another email to start anew."
    static let invalidEmail =
        "The email format you entered is invalid. Please double-check and make sure you're using a valid email address (e.g., yourname@example.com)."
    static let invalidCredentials =
        "The email or password provided is incorrect. Please check for typos and try logging in again."
    static let apiKeyNotAllowed = "API key creation is not allowed in the environment."

    static func validImageURL(_ url: String) -> Bool {
        if ["", "/user.png", "/favicon.png", "/static/favicon.png"].contains(url) { return true }
        if url.range(of: #"^/api/v1/users/[^/?#]+/profile/image$"#, options: .regularExpression) != nil { return true }
        if let components = URLComponents(string: url), ["http", "https"].contains(components.scheme?.lowercased() ?? ""),
            !(components.host ?? "").isEmpty
        {
            return true
        }
        return url.range(of: #"^data:image/(png|jpeg|gif|webp);base64,"#, options: [.regularExpression, .caseInsensitive]) != nil
    }

    // MARK: Sign-up and sign-in

    @Sendable func signup(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let form = try await Self.body(SignupForm.self, request)
        if let url = form.profileImageURL, !Self.validImageURL(url) { throw Self.invalidRequest }
        let email = form.email.lowercased()
        let config = try await accounts.config.fresh()
        if !config.signupAllowed, try await accounts.users.hasUsers() { throw APIError.forbidden }
        guard Accounts.isValidEmail(email) else { throw APIError(.badRequest, Self.invalidEmail) }
        try Accounts.checkPassword(form.password)
        try await refuseTakenEmail(email)
        let hash = try await accounts.hashPassword(form.password)
        let (user, stamp) = try await createUser(
            name: form.name, email: email, hash: hash, role: config.string("DEFAULT_USER_ROLE"),
            profileImageURL: form.profileImageURL ?? "/user.png", openSignup: true, actor: nil)
        let (body, cookie) = try await accounts.session(for: user, stamp: stamp)
        return try JSONResponse.make(body, headers: [.setCookie: cookie])
    }

    /// A cheap early answer for a taken email, before the costly hash (the transaction checks again).
    func refuseTakenEmail(_ email: String) async throws {
        if try await accounts.users.credentials(email: email) != nil { throw APIError(.badRequest, Self.emailTaken) }
    }

    /// Creates a user in one transaction; on an empty system the first user becomes admin and sign-up closes.
    /// Returns the user and their session stamp.
    func createUser(
        name: String, email: String, hash: String, role: String, profileImageURL: String, openSignup: Bool, actor: String?
    ) async throws -> (UserRecord, String) {
        let now = Int(Date().timeIntervalSince1970)
        var user = UserRecord(
            id: UUID().uuidString.lowercased(), email: email, role: role, name: name,
            profileImageURL: profileImageURL, lastActiveAt: now, updatedAt: now, createdAt: now)
        let accounts = self.accounts
        let defaultGroup = try await accounts.config.fresh().string("DEFAULT_GROUP_ID")
        return try await accounts.postgres.withTransaction(logger: accounts.logger) { connection -> (UserRecord, String) in
            // One sign-up at a time decides who is first.
            try await connection.query("SELECT pg_advisory_xact_lock(7201)", logger: accounts.logger)
            let isFirst = try await !accounts.users.hasUsers(on: connection)
            if openSignup, !isFirst, try await !accounts.config.fresh().signupAllowed { throw APIError.forbidden }
            if try await accounts.users.emailExists(email, on: connection) {
                throw APIError(.badRequest, Self.emailTaken)
            }
            if openSignup && isFirst { user.role = "admin" }
            let stamp = try await accounts.users.insert(user, passwordHash: hash, on: connection)
            if openSignup && isFirst {
                try await accounts.saveConfig(["ENABLE_SIGNUP": .bool(false)], actor: user.id, on: connection)
            }
            if !defaultGroup.isEmpty {
                try await accounts.groups.addMembers([user.id], groupID: defaultGroup, on: connection)
            }
            try await accounts.publish(
                "user.created", actor: actor ?? user.id,
                data: ["user_id": .string(user.id), "role": .string(user.role)], on: connection)
            return (user, stamp)
        }
    }

    @Sendable func signin(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let form = try await Self.body(SigninForm.self, request)
        guard let (user, hash, stamp) = try await accounts.users.credentials(email: form.email) else {
            _ = await accounts.verifyPassword(form.password, hash: accounts.settings.placeholderHash)
            throw APIError(.badRequest, Self.invalidCredentials)
        }
        guard await accounts.verifyPassword(form.password, hash: hash) else {
            throw APIError(.badRequest, Self.invalidCredentials)
        }
        let (body, cookie) = try await accounts.session(for: user, stamp: stamp)
        return try JSONResponse.make(body, headers: [.setCookie: cookie])
    }

    /// Clears the cookies and, beyond the real server, revokes the token for every gateway until it expires.
    @Sendable func signout(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        if let token = Credentials.token(in: request.headers), let claims = accounts.tokens.verify(token), let jti = claims.jti {
            let now = Int(Date().timeIntervalSince1970)
            let ttl = max(1, (claims.exp ?? now + 31_536_000) - now)
            do {
                try await accounts.redis.send(["SET", RevokedTokens.key(jti), "1", "EX", String(ttl)])
            } catch {
                accounts.logger.warning("could not record a sign-out in Redis", metadata: ["error": "\(error)"])
                throw APIError.unavailable
            }
        }
        var headers = HTTPFields()
        let expired = Self.httpDate(Date())
        for name in ["token", "owui-session", "oui-session", "oauth_id_token"] {
            headers.append(
                HTTPField(name: .setCookie, value: "\(name)=\"\"; expires=\(expired); Max-Age=0; Path=/; SameSite=lax"))
        }
        return try JSONResponse.make(["status": true], headers: headers)
    }

    // MARK: Session user

    /// `SessionUserInfoResponse` without `permissions`, which is spliced in as cached JSON text.
    struct SessionUserInfo: Encodable {
        var user: UserStore.SessionFields
        var token: String
        var expiresAt: Int?

        enum CodingKeys: String, CodingKey {
            case id, name, role, email, token, bio, gender
            case statusEmoji = "status_emoji"
            case statusMessage = "status_message"
            case statusExpiresAt = "status_expires_at"
            case profileImageURL = "profile_image_url"
            case tokenType = "token_type"
            case expiresAt = "expires_at"
            case dateOfBirth = "date_of_birth"
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(user.statusEmoji, forKey: .statusEmoji)
            try c.encode(user.statusMessage, forKey: .statusMessage)
            try c.encode(user.statusExpiresAt, forKey: .statusExpiresAt)
            try c.encode(user.id, forKey: .id)
            try c.encode(user.name, forKey: .name)
            try c.encode(user.role, forKey: .role)
            try c.encode(user.email, forKey: .email)
            try c.encode(user.profileImageURL, forKey: .profileImageURL)
            try c.encode(token, forKey: .token)
            try c.encode("Bearer", forKey: .tokenType)
            try c.encode(expiresAt, forKey: .expiresAt)
            try c.encode(user.bio, forKey: .bio)
            try c.encode(user.gender, forKey: .gender)
            try c.encode(user.dateOfBirth, forKey: .dateOfBirth)
        }
    }

    @Sendable func sessionUser(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireHumanSession()
        guard let token = Credentials.token(in: request.headers) else { throw APIError.invalidToken }
        let user: UserStore.SessionFields
        let grants: [JSONValue]
        if let cached = accounts.sessions.get(identity.userID) {
            (user, grants) = cached
        } else {
            guard let loaded = try await accounts.users.sessionFields(id: identity.userID) else {
                throw APIError.invalidToken
            }
            (user, grants) = loaded
            accounts.sessions.store(identity.userID, user, grants)
        }
        let config = try await accounts.config.current()
        let exp = identity.tokenExpiry
        var body = try JSONEncoder.skiff.encode(SessionUserInfo(user: user, token: token, expiresAt: exp))
        body.removeLast()  // the closing brace: permissions follow
        body.append(contentsOf: Array(#","permissions":"#.utf8))
        body.append(contentsOf: Array(config.permissionsJSON(groupGrants: grants).utf8))
        body.append(UInt8(ascii: "}"))
        var cookie = "token=\(token)"
        if let exp {
            let now = Int(Date().timeIntervalSince1970)
            cookie += "; expires=\(Self.httpDate(Date(timeIntervalSince1970: TimeInterval(exp)))); HttpOnly; Max-Age=\(max(0, exp - now))"
        } else {
            cookie += "; HttpOnly"
        }
        cookie += "; Path=/; SameSite=\(accounts.settings.cookieSameSite)"
        return Response(
            status: .ok, headers: [.contentType: "application/json", .setCookie: cookie],
            body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    @Sendable func updateProfile(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireVerified()
        let form = try await Self.body(ProfileForm.self, request)
        guard Self.validImageURL(form.profileImageURL) else { throw Self.invalidRequest }
        let accounts = self.accounts
        let user = try await accounts.postgres.withTransaction(logger: accounts.logger) { connection in
            try await accounts.users.updateProfile(
                userID: identity.userID, name: form.name, profileImageURL: form.profileImageURL, bio: form.bio,
                gender: form.gender, dateOfBirth: form.dateOfBirth, on: connection)
            try await accounts.publish("user.updated", actor: identity.userID, data: ["user_id": .string(identity.userID)], on: connection)
            return try await accounts.users.find(id: identity.userID, on: connection)
        }
        guard let user else { throw APIError(.badRequest, "Something went wrong :/") }
        return try JSONResponse.make(
            [
                "id": user.id, "name": user.name, "role": user.role, "email": user.email,
                "profile_image_url": user.profileImageURL,
            ], headers: Invalidation.user(identity.userID))
    }

    @Sendable func updateTimezone(_ request: Request, context: ServiceRequestContext) async throws -> Encoded<[String: Bool]> {
        let identity = try context.requireUser()
        let form = try await Self.body(TimezoneForm.self, request)
        try await accounts.users.setTimezone(form.timezone, userID: identity.userID)
        return Encoded(["status": true])
    }

    /// Skiff has no second factor: MFA is never enabled nor required (the original with `ENABLE_MFA` off).
    @Sendable func mfaStatus(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireHumanSession()
        return JSONResponse.text(OrderedJSON.object([("enabled", .bool(false)), ("required", .bool(false)), ("recovery_codes_remaining", .int(0))]))
    }

    /// Changes the password; every token issued before stops working (the session stamp rotates).
    @Sendable func updatePassword(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireUser()
        let form = try await Self.body(PasswordForm.self, request)
        guard let current = try await accounts.users.credentials(userID: identity.userID) else {
            throw APIError.invalidToken
        }
        guard await accounts.verifyPassword(form.password, hash: current.hash) else {
            throw APIError(.badRequest, "The password provided is incorrect. Please check for typos and try again.")
        }
        try Accounts.checkPassword(form.newPassword)
        let hash = try await accounts.hashPassword(form.newPassword)
        let accounts = self.accounts
        try await accounts.postgres.withTransaction(logger: accounts.logger) { connection in
            try await accounts.users.setPassword(userID: identity.userID, hash: hash, on: connection)
            try await accounts.publish(
                "user.sessions_revoked", actor: identity.userID, data: ["user_id": .string(identity.userID)],
                on: connection)
        }
        return try JSONResponse.make(true, headers: Invalidation.user(identity.userID))
    }

    // MARK: Admin

    @Sendable func addUser(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let form = try await Self.body(AddUserForm.self, request)
        if let url = form.profileImageURL, !Self.validImageURL(url) { throw Self.invalidRequest }
        let email = form.email.lowercased()
        guard Accounts.isValidEmail(email) else { throw APIError(.badRequest, Self.invalidEmail) }
        try Accounts.checkPassword(form.password)
        try await refuseTakenEmail(email)
        let hash = try await accounts.hashPassword(form.password)
        let (user, stamp) = try await createUser(
            name: form.name, email: email, hash: hash, role: form.role ?? "pending",
            profileImageURL: form.profileImageURL ?? "/user.png", openSignup: false, actor: admin.userID)
        let lifetime = try await accounts.config.current().tokenLifetime
        let token = try accounts.tokens.sign(SessionClaims(userID: user.id, sessionStamp: stamp, lifetime: lifetime))
        return try JSONResponse.make([
            "id": user.id, "name": user.name, "role": user.role, "email": user.email,
            "profile_image_url": "/api/v1/users/\(user.id)/profile/image", "token": token, "token_type": "Bearer",
        ])
    }

    @Sendable func adminDetails(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireUser()
        let config = try await accounts.config.current()
        guard config.bool("SHOW_ADMIN_DETAILS") else {
            throw APIError(.badRequest, "The requested action has been restricted as a security measure.")
        }
        if let email = config.values["ADMIN_EMAIL"]?.stringValue, !email.isEmpty {
            let name = try await accounts.users.credentials(email: email)?.0.name
            return try JSONResponse.make(JSONValue.object(["name": JSONValue(name), "email": .string(email)]))
        }
        let first = try await accounts.users.primaryAdminID()
        let user = if let first { try await accounts.users.find(id: first) } else { UserRecord?.none }
        return try JSONResponse.make(
            JSONValue.object([
                "name": JSONValue(user?.name), "email": JSONValue(user?.email),
            ]))
    }

    @Sendable func getAdminConfig(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        return try JSONResponse.make(try await accounts.config.fresh().adminObject)
    }

    @Sendable func updateAdminConfig(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let body = try await Self.body(JSONValue.self, request)
        let updates: [String: JSONValue]
        do {
            updates = try AdminConfig.update(from: body)
        } catch {
            throw Self.invalidRequest
        }
        try await accounts.saveConfig(updates, actor: admin.userID)
        let saved = try await accounts.config.fresh()
        let reply = saved.adminObject.merging(.object(["sessions_revoked": .bool(false)]))
        return try JSONResponse.make(reply, headers: Invalidation.config)
    }

    // MARK: API keys

    /// API keys need `ENABLE_API_KEYS` and, for non-admins, the `features.api_keys` permission.
    func requireAPIKeysAllowed(_ identity: Identity) async throws {
        guard try await accounts.config.current().bool("ENABLE_API_KEYS"),
            try await accounts.mayUseAPIKeys(userID: identity.userID, role: identity.role)
        else { throw APIError(.forbidden, Self.apiKeyNotAllowed) }
    }

    /// Creates (or replaces) the caller's key. The full key is shown once; only its SHA-256 is stored.
    @Sendable func createAPIKey(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireUser()
        try await requireAPIKeysAllowed(identity)
        let key = Accounts.newAPIKey()
        let accounts = self.accounts
        try await accounts.postgres.withTransaction(logger: accounts.logger) { connection in
            try await accounts.users.replaceAPIKey(
                userID: identity.userID, hash: Credentials.apiKeyDigest(key), hint: Accounts.apiKeyHint(key), on: connection)
            try await accounts.publish(
                "api_key.created", actor: identity.userID, data: ["user_id": .string(identity.userID)], on: connection)
        }
        return try JSONResponse.make(["api_key": key], headers: Invalidation.user(identity.userID))
    }

    @Sendable func getAPIKey(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireUser()
        try await requireAPIKeysAllowed(identity)
        guard let hint = try await accounts.users.apiKeyHint(userID: identity.userID) else {
            throw APIError(
                .notFound,
                "Oops! It looks like there's a hiccup. The API key is missing. Please make sure to provide a valid API key to access this feature.")
        }
        return try JSONResponse.make(["api_key": hint])
    }

    @Sendable func deleteAPIKey(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireUser()
        try await requireAPIKeysAllowed(identity)
        let accounts = self.accounts
        try await accounts.postgres.withTransaction(logger: accounts.logger) { connection in
            try await accounts.users.deleteAPIKey(userID: identity.userID, on: connection)
            try await accounts.publish(
                "api_key.deleted", actor: identity.userID, data: ["user_id": .string(identity.userID)], on: connection)
        }
        return try JSONResponse.make(true, headers: Invalidation.user(identity.userID))
    }

    // MARK: Helpers

    /// An HTTP date (`Mon, 21 Dec 2026 07:13:24 GMT`) for cookie expiry.
    static func httpDate(_ date: Date) -> String { HTTPDate.format(date) }
}
