// Access grants on workspace resources (notes now; prompts, tools and models later), as the real server keeps
// them: who (`user` by id or `*`, `group`, `anyone`) may `read` or `write` which resource, plus the sharing
// policy that decides which grants a user may hand out.
import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Shared

/// One grant as a client sends it, normalised (unknown principal types, permissions and empty ids dropped).
struct AccessGrant: Sendable, Hashable {
    var principalType: String
    var principalID: String
    var permission: String

    var isPublic: Bool { principalType == "user" && principalID == "*" }

    /// The original's `normalize_access_grants`: valid entries only, one per (type, id, permission).
    static func normalize(_ items: [JSONValue]?) -> [AccessGrant] {
        var result: [AccessGrant] = []
        for item in items ?? [] {
            guard let type = item["principal_type"]?.stringValue, ["user", "group", "anyone"].contains(type),
                let permission = item["permission"]?.stringValue, ["read", "write"].contains(permission),
                let id = item["principal_id"]?.stringValue, !id.isEmpty
            else { continue }
            if type == "anyone", id != "*" || permission != "read" { continue }
            let grant = AccessGrant(principalType: type, principalID: id, permission: permission)
            if !result.contains(grant) { result.append(grant) }
        }
        return result
    }
}

/// `{"access_grants": [...]}`, the body of every `access/update` route.
struct AccessGrantsForm: Decodable {
    var accessGrants: [JSONValue]

    enum CodingKeys: String, CodingKey {
        case accessGrants = "access_grants"
    }
}

/// The sharing keys of one resource type: the permission to share at all and the one to share with everyone.
struct SharingPolicy: Sendable {
    var share: String?
    var makePublic: String?

    static let note = SharingPolicy(share: "sharing.notes", makePublic: "sharing.public_notes")
    static let prompt = SharingPolicy(share: "sharing.prompts", makePublic: "sharing.public_prompts")
    static let tool = SharingPolicy(share: "sharing.tools", makePublic: "sharing.public_tools")
    static let skill = SharingPolicy(share: "sharing.skills", makePublic: "sharing.public_skills")

    static let audience = APIError(.forbidden, "You do not have permission to share with the requested audience")

    /// What a user may hand out of `grants` (the original's `filter_allowed_access_grants`); `anyone` grants are
    /// never kept for these resource types.
    func allowed(_ grants: [AccessGrant], user: Identity, policy: UserPolicy?) -> [AccessGrant] {
        var grants = grants.filter { $0.principalType != "anyone" }
        if makePublic == nil { grants.removeAll(where: \.isPublic) }
        if user.isAdmin || grants.isEmpty { return grants }
        guard let policy else { return [] }
        if let share, !policy.allows(share) { return [] }
        return grants.filter { grant in
            if grant.isPublic { return makePublic.map(policy.allows) ?? false }
            return policy.allows(grant.principalType == "user" ? "access_grants.allow_users" : "access_grants.allow_groups")
        }
    }

    /// The original's `validate_access_grants`: all or nothing, 403 when any grant is not the user's to give.
    func validate(_ grants: [AccessGrant], user: Identity, policy: UserPolicy?) throws -> [AccessGrant] {
        let allowed = allowed(grants, user: user, policy: policy)
        guard allowed.count == grants.count else { throw Self.audience }
        return allowed
    }
}

/// Users' policies from auth, kept a few seconds so a burst of requests asks once.
final class PolicyCache: Sendable {
    let auth: AuthLookup
    private let entries = NIOLockedValueBox<[String: (UserPolicy, ContinuousClock.Instant)]>([:])
    static let lifetime = Duration.seconds(5)

    init(auth: AuthLookup) {
        self.auth = auth
    }

    func policy(_ userID: String) async throws -> UserPolicy {
        let now = ContinuousClock.now
        if let (policy, fetched) = entries.withLockedValue({ $0[userID] }), now - fetched < Self.lifetime { return policy }
        let policy = try await auth.userPolicy(userID: userID)
        entries.withLockedValue { entries in
            if entries.count > 10_000 { entries.removeAll() }
            entries[userID] = (policy, now)
        }
        return policy
    }

    /// The user's policy when `feature` is switched on by the admin (`disabled` otherwise) and allowed to them
    /// (`features.<feature>`; admins always; `denied` otherwise).
    @discardableResult
    func require(_ feature: String, of user: Identity, disabled: APIError, denied: APIError) async throws -> UserPolicy {
        let policy = try await policy(user.userID)
        guard policy.features[feature] ?? true else { throw disabled }
        guard user.isAdmin || policy.allows("features." + feature) else { throw denied }
        return policy
    }
}

/// The `access_grants` table.
struct GrantStore: Sendable {
    let logger: Logger

    /// `access_grants` of one resource as `AccessGrantModel` JSON, oldest first (SQL over the resource id `idSQL`).
    static func listJSON(type: String, idSQL: String) -> String {
        """
        (SELECT coalesce(json_agg(json_build_object('id', g.id, 'resource_type', g.resource_type,
            'resource_id', g.resource_id, 'principal_type', g.principal_type, 'principal_id', g.principal_id,
            'permission', g.permission, 'created_at', g.created_at) ORDER BY g.created_at, g.id), '[]'::json)
         FROM chat.access_grants g WHERE g.resource_type = '\(type)' AND g.resource_id = \(idSQL))
        """
    }

    /// SQL true when the user holds `permission` on the resource through a grant (to everyone, to them, or to
    /// one of their groups); the caller binds the placeholders.
    static func grantedSQL(type: String, idSQL: String, permission: String, user: String, groups: String) -> String {
        """
        EXISTS (SELECT 1 FROM chat.access_grants g WHERE g.resource_type = '\(type)' AND g.resource_id = \(idSQL)
            AND g.permission = \(permission) AND ((g.principal_type = 'user' AND g.principal_id IN ('*', \(user)))
            OR (g.principal_type = 'group' AND g.principal_id = ANY(\(groups)))))
        """
    }

    /// Appends SQL true when the user owns resource `alias` (its `user_id`) or holds `permission` on it.
    static func ownedOrGranted(
        _ sql: inout SQLBuilder, type: String, alias: String, user: Identity, permission: String = "read"
    ) {
        sql.append(ownedOrGrantedSQL(&sql, type: type, alias: alias, user: user, permission: permission))
    }

    /// The same condition as text, its values bound in `sql` (to be placed later in the same query).
    static func ownedOrGrantedSQL(
        _ sql: inout SQLBuilder, type: String, alias: String, user: Identity, permission: String = "read"
    ) -> String {
        let userSQL = sql.placeholder(for: user.userID)
        let groups = sql.placeholder(for: user.groupIDs)
        let permissionSQL = sql.placeholder(for: permission)
        return "(\(alias).user_id = \(userSQL) OR "
            + grantedSQL(type: type, idSQL: "\(alias).id", permission: permissionSQL, user: userSQL, groups: groups) + ")"
    }

    /// Appends a list filter: every row for admins when `bypass` (the original's `BYPASS_ADMIN_ACCESS_CONTROL`),
    /// else the user's own rows and those granted to them.
    static func visible(
        _ sql: inout SQLBuilder, type: String, alias: String, user: Identity, bypass: Bool, permission: String = "read"
    ) {
        if user.isAdmin && bypass {
            sql.append("true")
        } else {
            ownedOrGranted(&sql, type: type, alias: alias, user: user, permission: permission)
        }
    }

    /// SQL for a row's `write_access` (its values bound in `sql`): admins with the bypass, owners, write grants.
    static func writeAccessSQL(_ sql: inout SQLBuilder, type: String, alias: String, user: Identity, bypass: Bool) -> String {
        user.isAdmin && bypass ? "true" : ownedOrGrantedSQL(&sql, type: type, alias: alias, user: user, permission: "write")
    }

    /// Whether `user` may `permission` a resource of `owner`: the owner, an admin when `admin`, or a grant.
    func permits(
        _ permission: String, type: String, id: String, owner: String, user: Identity, admin: Bool,
        on connection: PostgresConnection
    ) async throws -> Bool {
        if (admin && user.isAdmin) || owner == user.userID { return true }
        return try await has(permission, type: type, id: id, user: user, on: connection)
    }

    /// `access/update`: the grants checked against what the user may share (403 otherwise), then stored in place
    /// of the resource's old ones.
    func replaceValidated(
        _ form: AccessGrantsForm, sharing: SharingPolicy, type: String, id: String, user: Identity, policy: UserPolicy?,
        on connection: PostgresConnection
    ) async throws {
        let chosen = try sharing.validate(AccessGrant.normalize(form.accessGrants), user: user, policy: policy)
        try await replace(chosen, type: type, id: id, now: Int(Date().timeIntervalSince1970), on: connection)
    }

    func has(
        _ permission: String, type: String, id: String, user: Identity, on connection: PostgresConnection
    ) async throws -> Bool {
        var sql = SQLBuilder("SELECT ")
        let idSQL = sql.placeholder(for: id)
        let permissionSQL = sql.placeholder(for: permission)
        let userSQL = sql.placeholder(for: user.userID)
        let groups = sql.placeholder(for: user.groupIDs)
        sql.append(Self.grantedSQL(type: type, idSQL: idSQL, permission: permissionSQL, user: userSQL, groups: groups))
        for try await granted in try await connection.query(sql.query, logger: logger).decode(Bool.self) { return granted }
        return false
    }

    func replace(
        _ grants: [AccessGrant], type: String, id: String, now: Int, on connection: PostgresConnection
    ) async throws {
        try await connection.query(
            "DELETE FROM chat.access_grants WHERE resource_type = \(type) AND resource_id = \(id)", logger: logger)
        guard !grants.isEmpty else { return }
        let ids = grants.map { _ in UUID().uuidString.lowercased() }
        try await connection.query(
            """
            INSERT INTO chat.access_grants (id, resource_type, resource_id, principal_type, principal_id, permission, created_at)
            SELECT g.id, \(type), \(id), g.principal_type, g.principal_id, g.permission, \(now)
            FROM unnest(\(ids)::text[], \(grants.map(\.principalType))::text[], \(grants.map(\.principalID))::text[],
                \(grants.map(\.permission))::text[]) AS g(id, principal_type, principal_id, permission)
            ON CONFLICT DO NOTHING
            """, logger: logger)
    }
}

/// Query parameters the workspace lists share.
enum WorkspaceList {
    /// `view_option`: `created` keeps the caller's own items, `shared` the others'; anything else keeps all.
    static func viewOption(_ sql: inout SQLBuilder, _ request: Request, user: Identity, alias: String) {
        switch request.queryValue("view_option") {
        case "created":
            sql.append(" AND \(alias).user_id = ")
            sql.bind(user.userID)
        case "shared":
            sql.append(" AND \(alias).user_id <> ")
            sql.bind(user.userID)
        default: break
        }
    }

    /// `order_by` (`name`, `created_at`, else `updated_at`) and `direction` (`asc`, else descending).
    static func order(_ request: Request) -> (column: String, direction: String) {
        let requested = request.queryValue("order_by") ?? ""
        let column = ["name", "created_at", "updated_at"].contains(requested) ? requested : "updated_at"
        return (column, request.queryValue("direction") == "asc" ? "ASC" : "DESC")
    }
}
