// What the auth routes share: stores, token signing, password hashing, events and settings.
import Foundation
import HTTPTypes
import HummingbirdBcrypt
import Logging
import NIOConcurrencyHelpers
import NIOPosix
import PostgresNIO
import Shared

/// Settings only the auth service reads.
struct AuthSettings: Sendable {
    var bcryptCost: Int
    var cookieSameSite: String
    var cookieSecure: Bool
    var webuiName: String
    var defaultLocale: String
    var defaults: AdminConfig
    /// A bcrypt hash to compare against when the email is unknown, so timing does not tell: made at the
    /// configured cost, since a cheaper hash would answer unknown emails measurably faster than known ones.
    var placeholderHash: String

    init(environment env: Shared.Environment) {
        bcryptCost = min(max(env.int("SKIFF_BCRYPT_COST", default: 12), 4), 31)
        placeholderHash = Bcrypt.hash("skiff-placeholder", cost: UInt8(bcryptCost))
        cookieSameSite = env.string("WEBUI_AUTH_COOKIE_SAME_SITE", default: "lax")
        cookieSecure = env.bool("WEBUI_AUTH_COOKIE_SECURE", default: false)
        webuiName = env.string("WEBUI_NAME", default: "Open WebUI")
        defaultLocale = env.string("DEFAULT_LOCALE", default: "")
        defaults = AdminConfig.defaults(env)
    }
}

/// The auth service's shared machinery.
struct Accounts: Sendable {
    let users: UserStore
    let groups: GroupStore
    let config: ConfigStore
    let tokens: SessionTokens
    let outbox: Outbox
    let postgres: PostgresClient
    let redis: RedisClient
    let settings: AuthSettings
    let logger: Logger
    let sessions = SessionCache()

    // MARK: Passwords

    func hashPassword(_ password: String) async throws -> String {
        let cost = UInt8(settings.bcryptCost)
        return try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(password, cost: cost) }
    }

    func verifyPassword(_ password: String, hash: String) async -> Bool {
        // bcrypt looks at the first 72 bytes only, as the real server's verify does.
        let candidate = String(decoding: Array(password.utf8.prefix(72)), as: UTF8.self)
        return (try? await NIOThreadPool.singleton.runIfActive { Bcrypt.verify(candidate, hash: hash) }) ?? false
    }

    static func checkPassword(_ password: String) throws {
        if password.utf8.count > 72 {
            throw APIError(
                .badRequest,
                "Uh-oh! The password you entered is too long. Please make sure your password is less than 72 bytes long.")
        }
    }

    static func isValidEmail(_ email: String) -> Bool {
        email.hasSuffix("@localhost") || email.range(of: #"^[^@]+@[^@]+\.[^@]+"#, options: .regularExpression) != nil
    }

    // MARK: Sessions

    /// Signs a session token for the user and builds the sign-in reply and its cookie.
    func session(for user: UserRecord, stamp: String) async throws -> (body: JSONValue, cookie: String) {
        let config = try await self.config.current()
        let lifetime = config.tokenLifetime
        let claims = SessionClaims(userID: user.id, sessionStamp: stamp, lifetime: lifetime)
        let token = try tokens.sign(claims)
        let permissions = config.permissions(groupGrants: try await groups.permissionGrants(ofUser: user.id))
        let body: JSONValue = .object([
            "id": .string(user.id), "name": .string(user.name), "role": .string(user.role),
            "email": .string(user.email), "profile_image_url": .string("/api/v1/users/\(user.id)/profile/image"),
            "token": .string(token), "token_type": .string("Bearer"),
            "expires_at": JSONValue(claims.exp), "permissions": permissions,
        ])
        var cookie = "token=\(token); HttpOnly"
        if let lifetime { cookie += "; Max-Age=\(lifetime)" }
        cookie += "; Path=/; SameSite=\(settings.cookieSameSite)"
        if settings.cookieSecure { cookie += "; Secure" }
        return (body, cookie)
    }

    // MARK: Permissions

    /// The user's effective permissions: the configured defaults plus what their groups grant.
    func permissions(ofUser userID: String) async throws -> JSONValue {
        let config = try await self.config.current()
        return config.permissions(groupGrants: try await groups.permissionGrants(ofUser: userID))
    }

    /// Admins always; others when their permissions include `features.api_keys`.
    func mayUseAPIKeys(userID: String, role: String) async throws -> Bool {
        if role == "admin" { return true }
        return try await permissions(ofUser: userID).allows("features.api_keys")
    }

    // MARK: API keys

    static func newAPIKey() -> String {
        "sk-" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
    }

    /// What GET shows of a stored key: its beginning and end.
    static func apiKeyHint(_ key: String) -> String {
        "\(key.prefix(7))...\(key.suffix(4))"
    }

    // MARK: Events

    /// Writes an auth event into the outbox inside the caller's transaction.
    /// Saves admin config values and tells every replica (`config.updated`), in the caller's transaction.
    func saveConfig(_ updates: [String: JSONValue], actor: String?, on connection: PostgresConnection) async throws {
        try await config.save(updates, on: connection)
        try await publish("config.updated", actor: actor, data: [:], on: connection)
    }

    /// The same in a transaction of its own; the cached config is dropped again once it has committed (a read
    /// between the save and the commit may have cached the old values).
    func saveConfig(_ updates: [String: JSONValue], actor: String?) async throws {
        try await postgres.withTransaction(logger: logger) { try await saveConfig(updates, actor: actor, on: $0) }
        config.invalidate()
    }

    func publish(_ type: String, actor: String?, data: [String: JSONValue], on connection: PostgresConnection) async throws {
        let event = Event(type: type, actorID: actor, data: .object(data))
        try await outbox.enqueue(event, on: connection, logger: logger)
        sessions.apply(event)
    }
}

/// Session-user reads by user id, for a few seconds. Every auth event empties the entries it touches:
/// this replica's at once (and again when the event comes back on the stream, after the commit),
/// other replicas' when they read the event from the stream.
final class SessionCache: Sendable {
    private let entries = NIOLockedValueBox<[String: (fields: UserStore.SessionFields, grants: [JSONValue], at: ContinuousClock.Instant)]>([:])
    static let lifetime: Swift.Duration = .seconds(10)

    func get(_ userID: String) -> (UserStore.SessionFields, [JSONValue])? {
        guard let entry = entries.withLockedValue({ $0[userID] }), ContinuousClock.now - entry.at < Self.lifetime else {
            return nil
        }
        return (entry.fields, entry.grants)
    }

    func store(_ userID: String, _ fields: UserStore.SessionFields, _ grants: [JSONValue]) {
        entries.withLockedValue { entries in
            if entries.count > 50_000 { entries.removeAll() }
            entries[userID] = (fields, grants, .now)
        }
    }

    func apply(_ event: Event) {
        if let userID = event.data["user_id"]?.stringValue, !event.type.hasPrefix("group.") {
            entries.withLockedValue { _ = $0.removeValue(forKey: userID) }
        } else {
            entries.withLockedValue { $0.removeAll() }
        }
    }
}

/// Tells the gateway that proxied a change which of its cached entries are stale now
/// (the other gateway replicas learn it from the event stream).
enum Invalidation {
    static func user(_ id: String) -> HTTPFields { [InternalHeader.invalidate: "user:\(id)"] }
    static let config: HTTPFields = [InternalHeader.invalidate: "config"]
    static let all: HTTPFields = [InternalHeader.invalidate: "all"]
}
