// Custom models: presets that wrap a provider model with parameters and a system prompt, and provider models'
// own entries (name, access grants, active or not). Rows are few and read on every model list and completion,
// so each replica keeps them all for a second and drops them at once when it writes.
import Foundation
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Shared

struct CustomModel: Sendable {
    var id: String
    var userID: String
    var baseModelID: String?
    var name: String
    var params: [String: JSONValue]
    var meta: [String: JSONValue]
    var isActive: Bool
    var versionID: String?
    var createdAt: Int
    var updatedAt: Int
    /// `AccessGrantModel` objects.
    var grants: [JSONValue]

    func granted(_ permission: String, to user: Identity) -> Bool { user.isGranted(permission, by: grants) }

    func readable(by user: Identity) -> Bool { userID == user.userID || granted("read", to: user) }
    func writable(by user: Identity) -> Bool { userID == user.userID || granted("write", to: user) }

    /// `ModelMeta`'s declared fields, always present, in its order; other keys follow.
    static let metaFields = [
        "profile_image_url", "background_image_url", "description", "i18n", "capabilities", "knowledge", "voice",
        "voice_avatar",
    ]

    static func metaObject(_ meta: [String: JSONValue], droppingImage: Bool = false) -> OrderedObject {
        var object = OrderedObject(meta, first: metaFields)
        for (position, field) in metaFields.enumerated() where object[field] == nil {
            object.pairs.insert((field, OrderedObject.Node.value(.null)), at: min(position, object.pairs.count))
        }
        if droppingImage { object["profile_image_url"] = nil }
        return object
    }

    /// The params `/api/models` shows: only the model controls' labels and the compaction threshold.
    var publicParams: OrderedObject {
        var result = OrderedObject()
        if let controls = params["model_controls"]?.objectValue, !controls.isEmpty {
            var shown: [String: JSONValue] = [:]
            for (key, control) in controls {
                guard let control = control.objectValue else { continue }
                var item = control.filter { ["label", "description", "default", "display"].contains($0.key) }
                if let options = control["options"]?.objectValue {
                    item["options"] = .object(options.mapValues { option in
                        .object(["label": option["label"] ?? .null])
                    })
                }
                shown[key] = .object(item)
            }
            result["model_controls"] = .object(shown)
        }
        if let threshold = params["compact_token_threshold"] { result["compact_token_threshold"] = threshold }
        return result
    }

    /// `ModelModel` (with `params` as given, `meta` with its declared fields first), then any `extra` keys.
    func json(params: OrderedObject? = nil, droppingImage: Bool = false, extra: [(String, JSONValue)] = []) -> OrderedObject {
        var object = OrderedObject([
            ("version_id", versionID.map(JSONValue.string) ?? .null), ("id", .string(id)), ("user_id", .string(userID)),
            ("base_model_id", baseModelID.map(JSONValue.string) ?? .null), ("name", .string(name)),
        ])
        object.set("params", ordered: params ?? OrderedObject(self.params, first: []))
        object.set("meta", ordered: Self.metaObject(meta, droppingImage: droppingImage))
        object["access_grants"] = .array(grants)
        object["is_active"] = .bool(isActive)
        object["updated_at"] = .int(updatedAt)
        object["created_at"] = .int(createdAt)
        for (key, value) in extra { object[key] = value }
        return object
    }
}

/// The `chat.models` table and the model grants in `chat.access_grants`.
final class CustomModelStore: Sendable {
    let postgres: PostgresClient
    let logger: Logger
    private let cached = NIOLockedValueBox<(models: [CustomModel], loaded: ContinuousClock.Instant)?>(nil)
    /// Bumped by every write: a read that began before a write does not refill the cache with its old rows.
    private let writes = ManagedAtomicCounter()
    static let lifetime = Duration.seconds(1)

    init(postgres: PostgresClient, logger: Logger) {
        self.postgres = postgres
        self.logger = logger
    }

    /// Every row in the order they were made.
    func all() async throws -> [CustomModel] {
        if let (models, loaded) = cached.withLockedValue({ $0 }), ContinuousClock.now - loaded < Self.lifetime { return models }
        let started = ContinuousClock.now
        let generation = writes.current
        let rows = try await postgres.query(
            """
            SELECT m.id, m.user_id, m.base_model_id, m.name, m.params, m.meta, m.is_active, m.version_id, m.created_at,
                m.updated_at, \(unescaped: GrantStore.listJSON(type: "model", idSQL: "m.id"))::text
            FROM chat.models m ORDER BY m.seq
            """, logger: logger)
        var models: [CustomModel] = []
        for try await (id, userID, base, name, params, meta, active, version, created, updated, grants) in rows.decode(
            (String, String, String?, String, String, String, Bool, String?, Int, Int, String).self)
        {
            let grantList = JSONValue.parse(grants)?.arrayValue ?? []
            models.append(
                CustomModel(
                    id: id, userID: userID, baseModelID: base, name: name,
                    params: JSONValue.parse(params)?.objectValue ?? [:], meta: JSONValue.parse(meta)?.objectValue ?? [:],
                    isActive: active, versionID: version, createdAt: created, updatedAt: updated, grants: grantList))
        }
        cached.withLockedValue { if writes.current == generation { $0 = (models, started) } }
        return models
    }

    func model(_ id: String) async throws -> CustomModel? {
        try await all().first { $0.id == id }
    }

    func invalidate() {
        cached.withLockedValue {
            writes.increment()
            $0 = nil
        }
    }

    /// Runs `body` in a transaction and forgets the cached rows afterwards.
    func write<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        invalidate()
        defer { invalidate() }
        return try await postgres.withTransaction(logger: logger) { try await body($0) }
    }

    /// Inserts a new row; false when the id is taken (by a row another request made a moment ago, say).
    func insertNew(_ model: CustomModel, on connection: PostgresConnection) async throws -> Bool {
        let params = OrderedObject(model.params, first: []).text
        let meta = CustomModel.metaObject(model.meta).text
        let rows = try await connection.query(
            """
            INSERT INTO chat.models (id, user_id, base_model_id, name, params, meta, is_active, version_id, created_at, updated_at)
            VALUES (\(model.id), \(model.userID), \(model.baseModelID), \(model.name), \(params), \(meta), \(model.isActive),
                \(model.versionID), \(model.createdAt), \(model.updatedAt))
            ON CONFLICT (id) DO NOTHING RETURNING 1
            """, logger: logger)
        for try await _ in rows { return true }
        return false
    }

    func upsert(_ model: CustomModel, on connection: PostgresConnection) async throws {
        let params = OrderedObject(model.params, first: []).text
        let meta = CustomModel.metaObject(model.meta).text
        try await connection.query(
            """
            INSERT INTO chat.models (id, user_id, base_model_id, name, params, meta, is_active, version_id, created_at, updated_at)
            VALUES (\(model.id), \(model.userID), \(model.baseModelID), \(model.name), \(params), \(meta), \(model.isActive),
                \(model.versionID), \(model.createdAt), \(model.updatedAt))
            ON CONFLICT (id) DO UPDATE SET base_model_id = EXCLUDED.base_model_id, name = EXCLUDED.name,
                params = EXCLUDED.params, meta = EXCLUDED.meta, is_active = EXCLUDED.is_active,
                version_id = EXCLUDED.version_id, updated_at = EXCLUDED.updated_at
            """, logger: logger)
    }

    /// A history entry when the snapshot differs from the current version's; returns the version id to keep.
    func version(of model: CustomModel, previous: String?, user: String, message: String?, on connection: PostgresConnection)
        async throws -> String?
    {
        var meta = model.meta
        meta["hidden"] = nil
        let snapshot = OrderedJSON.object([
            ("name", .string(model.name)), ("base_model_id", model.baseModelID.map(JSONValue.string) ?? .null),
            ("params", .object(model.params)), ("meta", .object(meta)),
        ])
        if let previous {
            let rows = try await connection.query(
                "SELECT snapshot FROM chat.model_history WHERE id = \(previous)", logger: logger)
            for try await old in rows.decode(String.self) where JSONValue.parse(old) == JSONValue.parse(snapshot) {
                return previous
            }
        }
        let id = UUID().uuidString.lowercased()
        try await connection.query(
            """
            INSERT INTO chat.model_history (id, model_id, parent_id, user_id, commit_message, snapshot, created_at)
            VALUES (\(id), \(model.id), \(previous), \(user), \(message), \(snapshot), \(Int(Date().timeIntervalSince1970)))
            """, logger: logger)
        return id
    }

    func delete(_ ids: [String]?, on connection: PostgresConnection) async throws {
        if let ids {
            try await connection.query("DELETE FROM chat.models WHERE id = ANY(\(ids))", logger: logger)
            try await connection.query("DELETE FROM chat.model_history WHERE model_id = ANY(\(ids))", logger: logger)
            try await connection.query(
                "DELETE FROM chat.access_grants WHERE resource_type = 'model' AND resource_id = ANY(\(ids))", logger: logger)
        } else {
            try await connection.query("DELETE FROM chat.models", logger: logger)
            try await connection.query("DELETE FROM chat.model_history", logger: logger)
            try await connection.query("DELETE FROM chat.access_grants WHERE resource_type = 'model'", logger: logger)
        }
    }

    /// A deleted user's models go with their grants and history.
    func deleteUserData(userID: String) async throws {
        _ = try await write { connection in
            let rows = try await connection.query("SELECT id FROM chat.models WHERE user_id = \(userID)", logger: logger)
            var ids: [String] = []
            for try await id in rows.decode(String.self) { ids.append(id) }
            try await delete(ids, on: connection)
        }
    }
}
