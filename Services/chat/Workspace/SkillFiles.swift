// Skill files changed by operations (`put`, `move`, `delete`, as the skill editor sends them) and compared
// between versions (`history/diff`, `history/diff/file`), as the real server does.
import Foundation
import Hummingbird
import Shared

/// One change to a skill's files.
struct FileOperation: Decodable, Sendable {
    enum Kind: String, Decodable, Sendable { case put, move, delete }

    var op: Kind
    var path: String
    var content: String?
    var encoding: String?
    var destination: String?

    struct Failure: Error {
        var reason: String
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let raw = try c.decode(String.self, forKey: .op)
        guard let op = Kind(rawValue: raw) else {
            throw DecodingError.dataCorruptedError(forKey: .op, in: c, debugDescription: "Input should be 'put', 'move' or 'delete'")
        }
        self.op = op
        path = try c.decode(String.self, forKey: .path)
        content = try c.decodeIfPresent(String.self, forKey: .content)
        encoding = try c.decodeIfPresent(String.self, forKey: .encoding)
        if let encoding, encoding != "base64" {
            throw DecodingError.dataCorruptedError(forKey: .encoding, in: c, debugDescription: "Input should be 'base64'")
        }
        destination = try c.decodeIfPresent(String.self, forKey: .destination)
    }

    enum CodingKeys: String, CodingKey { case op, path, content, encoding, destination }
}

extension SkillsController {
    /// `validate_path`: relative POSIX paths without empty, `.` or `..` segments.
    static func checkedPath(_ path: String?) throws -> String {
        guard let path, !path.isEmpty, !path.hasPrefix("/"), !path.contains("\\"), !path.contains("\0"), !path.contains(":")
        else { throw FileOperation.Failure(reason: "File paths must be relative POSIX paths") }
        if path.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            throw FileOperation.Failure(reason: "Invalid file path")
        }
        return path
    }

    /// The operations applied one after another to `files` (a path matches a file, or every file below it).
    static func apply(_ operations: [FileOperation], to files: [SkillFile]) throws -> [SkillFile] {
        var byPath: [String: SkillFile] = [:]
        for file in files { byPath[file.path] = file }
        for operation in operations {
            let path = try checkedPath(operation.path)
            switch operation.op {
            case .put:
                guard let content = operation.content else { throw FileOperation.Failure(reason: "put requires content") }
                byPath[path] = SkillFile(path: path, content: content, encoding: operation.encoding)
            case .move, .delete:
                guard path != "SKILL.md" else { throw FileOperation.Failure(reason: "SKILL.md cannot be moved or deleted") }
                let matched = byPath.keys.filter { $0 == path || $0.hasPrefix(path + "/") }
                guard !matched.isEmpty else { throw FileOperation.Failure(reason: "File or directory not found: \(path)") }
                if operation.op == .delete {
                    for key in matched { byPath[key] = nil }
                    continue
                }
                let destination = try checkedPath(operation.destination)
                if destination.hasPrefix(path + "/") { throw FileOperation.Failure(reason: "Cannot move a directory into itself") }
                let moved = Set(matched)
                var renamed: [String: SkillFile] = [:]
                for key in matched {
                    let target = destination + key.dropFirst(path.count)
                    if byPath[target] != nil, !moved.contains(target) {
                        throw FileOperation.Failure(reason: "Move would overwrite an existing file")
                    }
                    var file = byPath[key]!
                    file.path = target
                    renamed[target] = file
                }
                for key in matched { byPath[key] = nil }
                byPath.merge(renamed) { _, new in new }
            }
        }
        return byPath.values.sorted { $0.path < $1.path }
    }

    static let skillVersionMissing = APIError(.notFound, "Skill version not found")

    /// A version's snapshot (`""`: the current one) of a skill the caller may read.
    func snapshot(_ id: String, version: String, user: Identity) async throws -> JSONValue {
        let row = try await store.checked(Self.kind, id, user, "read", admin: adminBypass, missing: Self.missing, denied: Self.denied)
        let entry = version.isEmpty ? (row.versionID ?? "") : version
        do {
            let (_, _, snapshot) = try await history.postgres.withConnection { try await store.entry(Self.kind, id, entry, on: $0) }
            return JSONValue.parse(snapshot) ?? .null
        } catch let error as APIError where error.status == .notFound {
            throw Self.skillVersionMissing
        }
    }

    /// What changed between two versions: the changed `name`, `description`, `meta`, and each file added,
    /// deleted or modified.
    @Sendable func diff(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let ids = try requiredQuery(request, "from_id", "to_id")
        let before = try await snapshot(id, version: ids[0], user: user)
        let after = try await snapshot(id, version: ids[1], user: user)
        var metadata: [(String, JSONValue)] = []
        for key in ["name", "description", "meta"] where before[key] != after[key] {
            metadata.append((key, .object(["before": before[key] ?? .null, "after": after[key] ?? .null])))
        }
        let old = Dictionary(Self.files(of: before["data"]).map { ($0.path, $0) }, uniquingKeysWith: { _, last in last })
        let new = Dictionary(Self.files(of: after["data"]).map { ($0.path, $0) }, uniquingKeysWith: { _, last in last })
        let files = Set(old.keys).union(new.keys).sorted().compactMap { path -> String? in
            guard old[path] != new[path] else { return nil }
            let status = old[path] == nil ? "added" : new[path] == nil ? "deleted" : "modified"
            let binary = old[path]?.encoding != nil || new[path]?.encoding != nil
            return OrderedJSON.object([("path", .string(path)), ("status", .string(status)), ("binary", .bool(binary))])
        }
        let metadataText = "{" + metadata.map { pair in
            JSONValue.string(pair.0).jsonText + ":" + OrderedJSON.object([("before", pair.1["before"]!), ("after", pair.1["after"]!)])
        }.joined(separator: ",") + "}"
        return JSONResponse.text(OrderedJSON.appending("{}", raw: [("metadata", metadataText), ("files", OrderedJSON.array(files))]))
    }

    /// One file's unified diff between two versions (`{"binary": true}` for a base64 file).
    @Sendable func fileDiff(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let values = try requiredQuery(request, "from_id", "to_id", "path")
        let (from, to, path) = (values[0], values[1], values[2])
        let before = Self.files(of: try await snapshot(id, version: from, user: user)["data"]).first { $0.path == path }
        let after = Self.files(of: try await snapshot(id, version: to, user: user)["data"]).first { $0.path == path }
        guard before != nil || after != nil else { throw APIError(.notFound, "File not found") }
        if before?.encoding != nil || after?.encoding != nil { return JSONResponse.text("{\"binary\":true}") }
        let old = before?.content ?? ""
        let new = after?.content ?? ""
        let patch = try UnifiedDiff.lines(
            old, new, fromFile: "\(from.prefix(7))/\(path)", toFile: "\(to.prefix(7))/\(path)"
        ).joined(separator: "\n")
        return JSONResponse.text(OrderedJSON.object([
            ("binary", .bool(false)), ("diff", .string(patch)), ("line_endings_only", .bool(patch.isEmpty && old != new)),
        ]))
    }
}
