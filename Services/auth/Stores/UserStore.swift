// Owns the SQL of users, their credentials and API keys.
import Foundation
import Logging
import PostgresNIO
import Shared

struct UserStore: Sendable {
    let postgres: PostgresClient
    let logger: Logger

    /// Runs the query on the caller's transaction when given one, else on the pool.
    private func run(_ query: PostgresQuery, on connection: PostgresConnection?) async throws -> PostgresRowSequence {
        if let connection { return try await connection.query(query, logger: logger) }
        return try await postgres.query(query, logger: logger)
    }

    /// Whether any user exists (every caller only tells an empty system from one with users,
    /// so this stops at the first row rather than counting the table).
    func hasUsers(on connection: PostgresConnection? = nil) async throws -> Bool {
        let rows = try await run("SELECT EXISTS (SELECT 1 FROM auth.users)", on: connection)
        for try await exists in rows.decode(Bool.self) { return exists }
        return false
    }

    func find(id: String, on connection: PostgresConnection? = nil) async throws -> UserRecord? {
        try await first(run("SELECT row_to_json(u)::text FROM auth.users u WHERE u.id = \(id)", on: connection))
    }

    /// What the session-user route shows of a user.
    struct SessionFields: Sendable {
        var id, name, role, email, profileImageURL: String
        var statusEmoji, statusMessage: String?
        var statusExpiresAt: Int?
        var bio, gender, dateOfBirth: String?
    }

    /// The session-user fields and the permission grants of the user's groups, in one query (the hot path).
    func sessionFields(id: String) async throws -> (SessionFields, [JSONValue])? {
        let rows = try await postgres.query(
            """
            SELECT u.id, u.name, u.role, u.email, u.profile_image_url, u.status_emoji, u.status_message,
                u.status_expires_at, u.bio, u.gender, u.date_of_birth, (
                SELECT json_agg(g.permissions ORDER BY g.updated_at DESC, g.id)::text
                FROM auth.groups g JOIN auth.group_members m ON m.group_id = g.id
                WHERE m.user_id = u.id AND g.permissions IS NOT NULL)
            FROM auth.users u WHERE u.id = \(id)
            """, logger: logger)
        for try await row in rows {
            let (id, name, role, email, image, emoji, message, expires, bio, gender, birth, grants) = try row.decode(
                (String, String, String, String, String, String?, String?, Int?, String?, String?, String?, String?).self)
            let fields = SessionFields(
                id: id, name: name, role: role, email: email, profileImageURL: image, statusEmoji: emoji,
                statusMessage: message, statusExpiresAt: expires, bio: bio, gender: gender, dateOfBirth: birth)
            let list: [JSONValue] = grants.flatMap { JSONValue.parse($0) }.flatMap { if case .array(let items) = $0 { items } else { nil } } ?? []
            return (fields, list)
        }
        return nil
    }

    /// The user with this email (case-insensitive) with their password hash and session stamp.
    func credentials(email: String) async throws -> (UserRecord, String, String)? {
        let rows = try await postgres.query(
            """
            SELECT row_to_json(u)::text, c.password_hash, c.session_stamp
            FROM auth.users u JOIN auth.credentials c ON c.user_id = u.id WHERE lower(u.email) = lower(\(email))
            """, logger: logger)
        for try await (json, hash, stamp) in rows.decode((String, String, String).self) {
            return (try decode(json), hash, stamp)
        }
        return nil
    }

    func credentials(userID: String) async throws -> (hash: String, stamp: String)? {
        let rows = try await postgres.query(
            "SELECT password_hash, session_stamp FROM auth.credentials WHERE user_id = \(userID)", logger: logger)
        for try await (hash, stamp) in rows.decode((String, String).self) { return (hash, stamp) }
        return nil
    }

    func emailExists(_ email: String, on connection: PostgresConnection, except userID: String? = nil) async throws -> Bool {
        let rows = try await connection.query(
            "SELECT 1 FROM auth.users WHERE lower(email) = lower(\(email)) AND id IS DISTINCT FROM \(userID)",
            logger: logger)
        for try await _ in rows.decode(Int.self) { return true }
        return false
    }

    /// Inserts the user and their credentials; returns the new session stamp (for signing their first token).
    func insert(_ user: UserRecord, passwordHash: String, on connection: PostgresConnection) async throws -> String {
        let stamp = UUID().uuidString.lowercased()
        try await connection.query(
            """
            INSERT INTO auth.users (id, email, role, name, profile_image_url, last_active_at, updated_at, created_at)
            VALUES (\(user.id), \(user.email), \(user.role), \(user.name), \(user.profileImageURL),
                    \(user.lastActiveAt), \(user.updatedAt), \(user.createdAt))
            """, logger: logger)
        try await connection.query(
            """
            INSERT INTO auth.credentials (user_id, password_hash, session_stamp)
            VALUES (\(user.id), \(passwordHash), \(stamp))
            """, logger: logger)
        return stamp
    }

    func setRole(_ role: String, userID: String, on connection: PostgresConnection) async throws {
        try await connection.query("UPDATE auth.users SET role = \(role) WHERE id = \(userID)", logger: logger)
    }

    /// Writes the admin-editable fields (nil leaves a field as it is).
    func update(
        userID: String, role: String?, name: String?, email: String?, profileImageURL: String?,
        on connection: PostgresConnection
    ) async throws {
        try await connection.query(
            """
            UPDATE auth.users SET role = coalesce(\(role), role), name = coalesce(\(name), name),
                email = coalesce(\(email), email), profile_image_url = coalesce(\(profileImageURL), profile_image_url)
            WHERE id = \(userID)
            """, logger: logger)
    }

    func updateProfile(
        userID: String, name: String, profileImageURL: String, bio: String?, gender: String?, dateOfBirth: String?,
        on connection: PostgresConnection
    ) async throws {
        let now = Int(Date().timeIntervalSince1970)
        try await connection.query(
            """
            UPDATE auth.users SET name = \(name), profile_image_url = \(profileImageURL), bio = \(bio),
                gender = \(gender), date_of_birth = \(dateOfBirth), updated_at = \(now)
            WHERE id = \(userID)
            """, logger: logger)
    }

    func setTimezone(_ timezone: String, userID: String) async throws {
        try await postgres.query("UPDATE auth.users SET timezone = \(timezone) WHERE id = \(userID)", logger: logger)
    }

    /// Replaces the password and rotates the session stamp, so every earlier token of the user stops working.
    func setPassword(userID: String, hash: String, on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            UPDATE auth.credentials SET password_hash = \(hash), session_stamp = \(UUID().uuidString.lowercased())
            WHERE user_id = \(userID)
            """, logger: logger)
    }

    func setJSON(_ column: String, value: JSONValue, userID: String) async throws {
        precondition(["settings", "info", "variables"].contains(column))
        try await postgres.query(
            "UPDATE auth.users SET \(unescaped: column) = \(value.jsonText)::jsonb WHERE id = \(userID)", logger: logger)
    }

    /// The user's variables column (nil when never set).
    func variables(userID: String) async throws -> JSONValue? {
        let rows = try await postgres.query("SELECT variables::text FROM auth.users WHERE id = \(userID)", logger: logger)
        for try await text in rows.decode(String?.self) { return text.flatMap(JSONValue.parse) }
        return nil
    }

    /// Sets the status fields that are given (nil leaves one as it is).
    func setStatus(emoji: String?, message: String?, expiresAt: Int?, userID: String) async throws {
        try await postgres.query(
            """
            UPDATE auth.users SET status_emoji = coalesce(\(emoji), status_emoji),
                status_message = coalesce(\(message), status_message),
                status_expires_at = coalesce(\(expiresAt), status_expires_at)
            WHERE id = \(userID)
            """, logger: logger)
    }

    func delete(userID: String, on connection: PostgresConnection) async throws {
        try await connection.query("DELETE FROM auth.users WHERE id = \(userID)", logger: logger)
    }

    /// The first user (the primary admin), who cannot be demoted or deleted.
    func primaryAdminID() async throws -> String? {
        let rows = try await postgres.query(
            "SELECT id FROM auth.users ORDER BY created_at ASC, (role = 'admin') DESC, id LIMIT 1", logger: logger)
        for try await id in rows.decode(String.self) { return id }
        return nil
    }

    /// One page of users, filtered and ordered as the real server's user list is, and the total.
    func list(query: String?, orderBy: String?, ascending: Bool, limit: Int?, offset: Int) async throws -> ([UserRecord], Int) {
        let pattern = query.map { "%\($0)%" }
        let column = orderBy.flatMap {
            ["name", "email", "created_at", "last_active_at", "updated_at", "role"].contains($0) ? $0 : nil
        } ?? "created_at"
        let direction = ascending && orderBy != nil ? "ASC" : "DESC"
        let rows = try await postgres.query(
            """
            SELECT row_to_json(u)::text, count(*) OVER ()::bigint FROM auth.users u
            WHERE (\(pattern)::text IS NULL OR u.name ILIKE \(pattern) OR u.email ILIKE \(pattern))
            ORDER BY u.\(unescaped: column) \(unescaped: direction), u.id
            LIMIT \(limit ?? 1_000_000) OFFSET \(offset)
            """, logger: logger)
        var users: [UserRecord] = []
        var total = 0
        for try await (json, count) in rows.decode((String, Int).self) {
            users.append(try decode(json))
            total = count
        }
        if users.isEmpty && offset > 0 {
            total = try await countMatching(pattern)
        }
        return (users, total)
    }

    /// `[{"id", "name", "role", "email"}]` of the given users, or of at most 1,000 users (by name) whose name or
    /// email matches the `ILIKE` pattern `%query%` as the original's searches write it.
    func summaries(ids: [String]?, matching query: String?) async throws -> String {
        let pattern = query.map { "%\($0)%" }
        let rows = try await postgres.query(
            """
            SELECT coalesce(json_agg(json_build_object('id', u.id, 'name', u.name, 'role', u.role, 'email', u.email)
                ORDER BY u.name, u.id), '[]')::text
            FROM (SELECT u.id, u.name, u.role, u.email FROM auth.users u
                WHERE (\(ids)::text[] IS NULL OR u.id = ANY(\(ids)::text[]))
                AND (\(pattern)::text IS NULL OR u.name ILIKE \(pattern) OR u.email ILIKE \(pattern))
                ORDER BY u.name, u.id LIMIT CASE WHEN \(ids)::text[] IS NULL THEN 1000 END) u
            """, logger: logger)
        for try await json in rows.decode(String.self) { return json }
        return "[]"
    }

    private func countMatching(_ pattern: String?) async throws -> Int {
        let rows = try await postgres.query(
            """
            SELECT count(*)::bigint FROM auth.users u
            WHERE (\(pattern)::text IS NULL OR u.name ILIKE \(pattern) OR u.email ILIKE \(pattern))
            """, logger: logger)
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }

    // MARK: API keys

    func replaceAPIKey(userID: String, hash: String, hint: String, on connection: PostgresConnection) async throws {
        let now = Int(Date().timeIntervalSince1970)
        try await connection.query(
            """
            INSERT INTO auth.api_keys (user_id, key_hash, key_hint, created_at) VALUES (\(userID), \(hash), \(hint), \(now))
            ON CONFLICT (user_id) DO UPDATE SET key_hash = EXCLUDED.key_hash, key_hint = EXCLUDED.key_hint,
                created_at = EXCLUDED.created_at
            """, logger: logger)
    }

    func apiKeyHint(userID: String) async throws -> String? {
        let rows = try await postgres.query("SELECT key_hint FROM auth.api_keys WHERE user_id = \(userID)", logger: logger)
        for try await hint in rows.decode(String.self) { return hint }
        return nil
    }

    func deleteAPIKey(userID: String, on connection: PostgresConnection) async throws {
        try await connection.query("DELETE FROM auth.api_keys WHERE user_id = \(userID)", logger: logger)
    }

    /// The owner of an API key (by SHA-256) with their role.
    func owner(apiKeyHash: String) async throws -> (id: String, role: String, name: String, email: String, groups: [String])? {
        let rows = try await postgres.query(
            """
            SELECT u.id, u.role, u.name, u.email,
                coalesce((SELECT array_agg(m.group_id ORDER BY m.group_id) FROM auth.group_members m WHERE m.user_id = u.id), '{}')
            FROM auth.api_keys k JOIN auth.users u ON u.id = k.user_id WHERE k.key_hash = \(apiKeyHash)
            """, logger: logger)
        for try await (id, role, name, email, groups) in rows.decode((String, String, String, String, [String]).self) {
            return (id, role, name, email, groups)
        }
        return nil
    }

    /// Role, session stamp, name and email of a user, for the gateway.
    func principal(userID: String) async throws -> (
        role: String, stamp: String?, name: String, email: String, groups: [String]
    )? {
        let rows = try await postgres.query(
            """
            SELECT u.role, c.session_stamp, u.name, u.email,
                coalesce((SELECT array_agg(m.group_id ORDER BY m.group_id) FROM auth.group_members m WHERE m.user_id = u.id), '{}')
            FROM auth.users u LEFT JOIN auth.credentials c ON c.user_id = u.id WHERE u.id = \(userID)
            """, logger: logger)
        for try await (role, stamp, name, email, groups) in rows.decode((String, String?, String, String, [String]).self) {
            return (role, stamp, name, email, groups)
        }
        return nil
    }

    private func first(_ rows: PostgresRowSequence) async throws -> UserRecord? {
        for try await json in rows.decode(String.self) { return try decode(json) }
        return nil
    }

    func decode(_ json: String) throws -> UserRecord {
        try JSONDecoder().decode(UserRecord.self, from: Data(json.utf8))
    }
}
