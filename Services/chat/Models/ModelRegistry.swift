// The merged model list (provider models, custom models laid over them, presets after) and the access rules on
// it, for `/api/models` and for finding where a completion goes.
import Foundation
import Hummingbird
import Shared

/// One entry of the merged list.
struct ModelEntry: Sendable {
    var id: String
    var entry: OrderedObject
    /// The provider model the entry is (or, for a preset, wraps); nil for a preset whose base is gone.
    var base: BaseModel?
    /// The custom model row of this id, if any.
    var custom: CustomModel?
}

struct ModelRegistry: Sendable {
    let bases: BaseModelCache
    let store: CustomModelStore
    /// `BYPASS_ADMIN_ACCESS_CONTROL`: admins see and use every model.
    let adminBypass: Bool
    /// `BYPASS_MODEL_ACCESS_CONTROL`: nobody is filtered.
    let modelBypass: Bool

    static let notFound = APIError(.badRequest, "Model not found")

    func filtered(_ user: Identity) -> Bool {
        !modelBypass && (!user.isAdmin || !adminBypass)
    }

    /// The merged list before access filtering, in the original's order: provider models, then presets.
    func merged(refresh: Bool = false) async throws -> [ModelEntry] {
        let bases = try await bases.models(refresh: refresh)
        guard !bases.isEmpty else { return [] }
        let customs = try await store.all()
        var entries = bases.map { ModelEntry(id: $0.id, entry: $0.entry, base: $0, custom: nil) }
        var removed: Set<Int> = []
        let baseCount = entries.count
        func lookup(_ id: String) -> Int? {
            if let exact = entries.prefix(baseCount).firstIndex(where: { $0.id == id }) { return exact }
            return entries.prefix(baseCount).firstIndex { entry in
                if case .ollama = entry.base?.source { return entry.id.split(separator: ":").first.map(String.init) == id }
                return false
            }
        }
        for row in customs {
            if let baseID = row.baseModelID {
                guard row.isActive, !entries.prefix(baseCount).contains(where: { $0.id == row.id }) else { continue }
                let base = lookup(baseID).flatMap { entries[$0].base }
                    ?? lookup(String(baseID.split(separator: ":").first ?? "")).flatMap { entries[$0].base }
                var entry = OrderedObject([
                    ("id", .string(row.id)), ("name", .string(row.name)), ("object", .string("model")),
                    ("created", .int(row.createdAt)), ("owned_by", .string(base?.ownedBy ?? "openai")),
                    ("connection_type", base?.connectionType ?? .null), ("preset", .bool(true)),
                ])
                if let provider = base?.provider, !provider.isEmpty { entry["provider"] = .string(provider) }
                entry.set("info", ordered: row.json(params: row.publicParams))
                entries.append(ModelEntry(id: row.id, entry: entry, base: base, custom: row))
            } else {
                guard let index = lookup(row.id) else { continue }
                if !row.isActive {
                    removed.insert(index)
                    continue
                }
                entries[index].entry["name"] = .string(row.name)
                entries[index].entry.set("info", ordered: row.json(params: row.publicParams))
                entries[index].custom = row
            }
        }
        return entries.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    }

    /// Whether `user` may see an entry in the list.
    func visible(_ entry: ModelEntry, to user: Identity) -> Bool {
        guard filtered(user) else { return true }
        guard let custom = entry.custom else { return user.isAdmin }
        return custom.readable(by: user)
    }

    /// `/api/models`: the entries the user may see, with `actions`, `filters`, `tags` and without profile images.
    func listJSON(for user: Identity, refresh: Bool) async throws -> String {
        var items: [String] = []
        for var model in try await merged(refresh: refresh) where visible(model, to: user) {
            if var row = model.custom {
                if let tags = row.meta["tags"] { row.meta["tags"] = .array(Self.normalizedTags(tags)) }
                model.entry.set("info", ordered: row.json(params: row.publicParams, droppingImage: true))
            }
            if var ollama = model.entry["ollama"]?.objectValue {
                ollama["expires_at"] = nil
                model.entry["ollama"] = .object(ollama)
            }
            var tags: [JSONValue] = []
            for tag in Self.normalizedTags(model.custom?.meta["tags"] ?? .array([])) + Self.normalizedTags(model.entry["tags"] ?? .array([])) {
                tags.removeAll { $0 == tag }
                tags.append(tag)
            }
            model.entry["tags"] = nil
            model.entry["actions"] = .array([])
            model.entry["filters"] = .array([])
            model.entry["tags"] = .array(tags)
            items.append(model.entry.text)
        }
        return "{\"data\":" + OrderedJSON.array(items) + "}"
    }

    /// Tags as `[{"name": ...}]` from strings or `{name}` objects, trimmed, empty ones dropped.
    static func normalizedTags(_ value: JSONValue) -> [JSONValue] {
        (value.arrayValue ?? []).compactMap { item in
            let name = (item.stringValue ?? item["name"]?.stringValue)?.trimmingCharacters(in: .whitespaces)
            guard let name, !name.isEmpty else { return nil }
            return .object(["name": .string(name)])
        }
    }

    /// Where a completion for `modelID` goes: the entry, the provider model and the custom row whose params
    /// apply; 400 "Model not found" when the model is unknown or the user may not use it.
    func resolve(_ modelID: String, for user: Identity) async throws -> (entry: ModelEntry, base: BaseModel) {
        let entries = try await merged()
        guard let entry = entries.first(where: { $0.id == modelID }) else { throw Self.notFound }
        if filtered(user) { try await checkAccess(entry.custom, user: user, denied: Self.notFound) }
        guard let base = entry.base else { throw Self.notFound }
        return (entry, base)
    }

    /// The original's `check_model_access`: the model needs an entry the user may read, and so does every model
    /// it is built on (a missing entry there: admins only).
    func checkAccess(_ row: CustomModel?, user: Identity, denied: APIError) async throws {
        guard let row, row.readable(by: user) else { throw denied }
        var next = row.baseModelID
        var seen: Set<String> = [row.id]
        while let id = next, seen.insert(id).inserted {
            guard let base = try await store.model(id) else {
                if user.isAdmin { break }
                throw denied
            }
            guard base.readable(by: user) || (user.isAdmin && adminBypass) else { throw denied }
            next = base.baseModelID
        }
    }
}
