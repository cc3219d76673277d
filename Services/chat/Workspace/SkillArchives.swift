// Skills in and out as files: `export?format=zip|skill` (one folder per skill), and `import/preview` and
// `import` of uploaded JSON, Markdown, zip and `.skill` archives and folders, as the real server reads them.
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PostgresNIO
import Shared

extension SkillsController {
    /// A skill as an upload describes it, before the user decides what to do with it.
    struct Package: Sendable {
        var id: String?
        var name: String?
        var description: String?
        var meta: JSONValue?
        var isActive: Bool?
        var files: [SkillFile]
    }

    static let slugPattern = #"^[a-z0-9]+(-[a-z0-9]+)*$"#

    /// `key: value` lines of SKILL.md's YAML front matter (between `---` lines), quotes taken off.
    static func yamlFrontmatter(_ content: String) -> [String: String] {
        let lines = content.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? String($0.dropLast()) : String($0)
        }
        guard lines.first?.trimmingCharacters(in: .whitespaces) == "---" else { return [:] }
        var result: [String: String] = [:]
        for line in lines.dropFirst() {
            if line.trimmingCharacters(in: .whitespaces) == "---" { break }
            guard !line.hasPrefix(" "), let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            var value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, let first = value.first, (first == "\"" || first == "'"), value.last == first {
                value = String(value.dropFirst().dropLast())
            }
            if !key.isEmpty { result[key] = value }
        }
        return result
    }

    // MARK: Export

    /// The zip of the packages (JSON texts of `{id, name, description, meta, files, is_active}`): each in the
    /// folder its SKILL.md names, else its id.
    static func archive(_ packages: [String], format: String, ids: [String]) throws -> Response {
        var entries: [ZipArchive.Entry] = []
        var folders: Set<String> = []
        for text in packages {
            guard let package = JSONValue.parse(text), let id = package["id"]?.stringValue else { continue }
            let files = Self.files(of: package)
            let skillMD = files.first { $0.path == "SKILL.md" }?.content ?? ""
            var folder = id
            if let name = yamlFrontmatter(skillMD)["name"], name.range(of: slugPattern, options: .regularExpression) != nil {
                folder = name
            }
            guard folders.insert(folder).inserted else {
                throw APIError(.badRequest, "Selected skills have duplicate export directory names")
            }
            for file in files { entries.append(ZipArchive.Entry(path: folder + "/" + file.path, data: Array(file.bytes))) }
        }
        let bytes: [UInt8]
        do {
            bytes = try ZipArchive.write(entries)
        } catch let error as ZipArchive.Invalid {
            throw APIError(.badRequest, error.reason)
        }
        let filename = format == "skill" ? "\(ids.first ?? "skill").skill" : "skills.zip"
        return Response(
            status: .ok,
            headers: [.contentType: "application/zip", .contentDisposition: "attachment; filename=\"\(filename)\""],
            body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    // MARK: Import

    static func importFailure(_ text: String) -> APIError { APIError(.badRequest, text) }

    /// The uploads of a multipart body (`files` parts) and its other fields.
    func uploads(_ request: Request) async throws -> (files: [MultipartPart], fields: [String: String]) {
        guard let boundary = Multipart.boundary(from: request.headers[.contentType]) else {
            throw APIError.validation([
                ValidationIssue(type: "missing", loc: [.string("body"), .string("files")], msg: "Field required", input: .null)
            ])
        }
        let body = try await JSONBody.collect(request, limit: 200 << 20)
        let parts: [MultipartPart]
        do {
            parts = try Multipart.parse(Array(buffer: body), boundary: boundary)
        } catch {
            throw Self.importFailure("The upload is not a valid multipart form")
        }
        let files = parts.filter { $0.name == "files" }
        guard !files.isEmpty else {
            throw APIError.validation([
                ValidationIssue(type: "missing", loc: [.string("body"), .string("files")], msg: "Field required", input: .null)
            ])
        }
        guard files.count <= 10_000 else { throw Self.importFailure("Too many files") }
        var fields: [String: String] = [:]
        for part in parts where part.filename == nil { fields[part.name] = part.text }
        return (files, fields)
    }

    /// A file's content as stored: text when it is UTF-8, base64 otherwise.
    static func skillFile(path: String, data: [UInt8]) -> SkillFile {
        if let text = String(validating: data, as: UTF8.self) { return SkillFile(path: path, content: text) }
        return SkillFile(path: path, content: Data(data).base64EncodedString(), encoding: "base64")
    }

    /// Skills in a tree of files: a SKILL.md at the top makes one skill of everything; otherwise every folder
    /// holding a SKILL.md that lies in no other such folder is one (a nested one's files are its parent's).
    static func packages(
        inTree entries: [(path: String, data: [UInt8])], noSkill: String = "Archive contains no SKILL.md",
        outside: String = "Archive contains files outside skill directories"
    ) throws -> [Package] {
        var seen: Set<String> = []
        for entry in entries where !seen.insert(entry.path).inserted {
            throw importFailure("Duplicate archive path: \(entry.path)")
        }
        if seen.contains("SKILL.md") {
            return [Package(files: entries.map { skillFile(path: $0.path, data: $0.data) })]
        }
        var roots = Set<String>()
        for entry in entries where entry.path.hasSuffix("/SKILL.md") {
            roots.insert(String(entry.path.dropLast("SKILL.md".count)))
        }
        let kept = roots.filter { root in !roots.contains { $0 != root && root.hasPrefix($0) } }.sorted()
        guard !kept.isEmpty else { throw importFailure(noSkill) }
        if entries.contains(where: { entry in !kept.contains { entry.path.hasPrefix($0) } }) { throw importFailure(outside) }
        return kept.map { root in
            let files = entries.filter { $0.path.hasPrefix(root) }.map { skillFile(path: String($0.path.dropFirst(root.count)), data: $0.data) }
            return Package(files: files)
        }
    }

    /// Every package the uploads hold, in upload order.
    static func packages(from uploads: [MultipartPart]) throws -> [Package] {
        var result: [Package] = []
        guard uploads.reduce(0, { $0 + $1.data.count }) <= 200 << 20 else { throw importFailure("Import exceeds 200 MiB") }
        // One budget for what all archives of the upload expand to, not 200 MB each.
        var expandable = 200 << 20
        for upload in uploads where !(upload.filename ?? "").contains("/") {
            let name = (upload.filename ?? "").lowercased()
            if name.hasSuffix(".zip") || name.hasSuffix(".skill") {
                let entries: [ZipArchive.Entry]
                do {
                    entries = try ZipArchive.read(upload.data, maxTotal: expandable)
                } catch let error as ZipArchive.Invalid {
                    throw importFailure(error.reason)
                }
                expandable -= entries.reduce(0) { $0 + $1.data.count }
                result += try packages(inTree: entries.map { ($0.path, $0.data) })
            } else if name.hasSuffix(".md") {
                result.append(Package(files: [SkillFile(path: "SKILL.md", content: upload.text)]))
            } else if name.hasSuffix(".json") {
                guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(upload.data)) else {
                    throw importFailure("Invalid JSON in \(upload.filename ?? "upload")")
                }
                for item in value.arrayValue ?? [value] {
                    guard item.objectValue != nil else { throw importFailure("Each skill in JSON must be an object") }
                    var files = Self.files(of: item)
                    if files.isEmpty, let content = item["content"]?.stringValue { files = [SkillFile(path: "SKILL.md", content: content)] }
                    result.append(
                        Package(
                            id: item["id"]?.stringValue, name: item["name"]?.stringValue, description: item["description"]?.stringValue,
                            meta: item["meta"], isActive: item["is_active"]?.boolValue, files: files))
                }
            } else {
                throw importFailure("Use JSON, ZIP, .skill, or Markdown")
            }
        }
        // A folder's files (names with `/`) come after the single uploads.
        let folder = uploads.filter { ($0.filename ?? "").contains("/") }
        if !folder.isEmpty {
            result += try packages(
                inTree: folder.map { ($0.filename ?? "", $0.data) },
                noSkill: "Select a folder containing one or more non-nested skills", outside: "Files outside skill directories")
        }
        return result.map(withDefaults)
    }

    /// Name, id and description from the package, else from SKILL.md's front matter, else the defaults.
    static func withDefaults(_ package: Package) -> Package {
        var package = package
        let front = yamlFrontmatter(package.files.first { $0.path == "SKILL.md" }?.content ?? "")
        let name = package.name.flatMap { $0.isEmpty ? nil : $0 } ?? front["name"].flatMap { $0.isEmpty ? nil : $0 } ?? "Imported skill"
        package.name = name
        if package.id?.isEmpty ?? true {
            let slug = name.lowercased().replacingOccurrences(of: "[^a-z0-9_-]+", with: "-", options: .regularExpression)
                .trimmingCharacters(in: CharacterSet(charactersIn: "-"))
            package.id = slug.isEmpty ? "imported-skill" : slug
        }
        package.description = package.description ?? front["description"] ?? ""
        return package
    }

    func mayImport(_ user: Identity) async throws -> UserPolicy {
        let policy = try await policies.policy(user.userID)
        guard user.isAdmin || policy.allows("workspace.skills_import") else {
            throw APIError(.forbidden, "Import permission required")
        }
        return policy
    }

    @Sendable func importPreview(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        _ = try await mayImport(user)
        let packages = try Self.packages(from: try await uploads(request).files)
        var items: [String] = []
        try await history.postgres.withConnection { connection in
            for (index, package) in packages.enumerated() {
                let id = package.id ?? ""
                let name = package.name ?? ""
                var idTaken = false
                var nameTaken = false
                var version: String?
                var owner: String?
                let rows = try await connection.query(
                    "SELECT id, user_id, version_id FROM chat.plugins WHERE kind = 'skill' AND (id = \(id) OR name = \(name))",
                    logger: logger)
                for try await (found, foundOwner, foundVersion) in rows.decode((String, String, String?).self) {
                    if found == id {
                        idTaken = true
                        owner = foundOwner
                        version = foundVersion
                    } else {
                        nameTaken = true
                    }
                }
                var canReplace = false
                if idTaken, let owner {
                    canReplace = try await store.grants.permits(
                        "write", type: Self.kind, id: id, owner: owner, user: user, admin: adminBypass, on: connection)
                }
                var pairs: [(String, String)] = [
                    ("index", String(index)), ("id", JSONValue.string(id).jsonText), ("name", JSONValue.string(name).jsonText),
                    ("description", JSONValue.string(package.description ?? "").jsonText),
                    ("meta", Self.metaText(Self.meta(package.meta))),
                ]
                if let active = package.isActive { pairs.append(("is_active", active ? "true" : "false")) }
                pairs += [
                    ("files", Self.summaries(package.files)), ("id_taken", idTaken ? "true" : "false"),
                    ("name_taken", nameTaken ? "true" : "false"), ("can_replace", canReplace ? "true" : "false"),
                    ("expected_version_id", (canReplace ? version.map(JSONValue.string) : nil)?.jsonText ?? "null"),
                ]
                items.append(OrderedJSON.appending("{}", raw: pairs))
            }
        }
        return JSONResponse.text(OrderedJSON.array(items))
    }

    @Sendable func importSkills(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let policy = try await mayImport(user)
        let (files, fields) = try await uploads(request)
        let packages = try Self.packages(from: files)
        guard let decisions = fields["decisions"].flatMap(JSONValue.parse)?.arrayValue, decisions.count == packages.count,
            decisions.allSatisfy({ $0.objectValue != nil })
        else { throw Self.importFailure("One decision is required per skill") }
        var results: [String] = []
        for (package, decision) in zip(packages, decisions) {
            let action = decision["action"]?.stringValue ?? ""
            let id = decision["id"]?.stringValue ?? package.id ?? ""
            func result(_ status: String, error: String? = nil) -> String {
                var pairs: [(String, JSONValue)] = [("status", .string(status)), ("id", .string(error == nil ? id : package.id ?? id))]
                if let error { pairs.append(("error", .string(error))) }
                return OrderedJSON.object(pairs)
            }
            var form = SkillForm(
                id: id, name: decision["name"]?.stringValue ?? package.name ?? "", description: package.description,
                meta: package.meta, files: package.files)
            form.isActive = package.isActive
            do {
                switch action {
                case "skip":
                    results.append(result("skipped"))
                case "create", "copy":
                    try await history.transaction { connection in
                        try await insert(form, user: user, policy: policy, grants: [], active: package.isActive ?? true, on: connection)
                    }
                    results.append(result("saved"))
                case "replace":
                    guard let expected = decision["expected_version_id"]?.stringValue else {
                        throw Self.importFailure("Replacement requires expected_version_id")
                    }
                    form.expectedVersionID = expected
                    form.sent = ["description", "meta"]
                    _ = try await history.transaction { connection in
                        try await applyUpdate(form, id: id, user: user, on: connection)
                    }
                    results.append(result("saved"))
                default:
                    throw Self.importFailure("Unknown import action")
                }
            } catch let error as APIError {
                results.append(result("error", error: error.detail.stringValue ?? error.detail.jsonText))
            } catch let error as PostgresTransactionError {
                let detail = (error.closureError as? APIError)?.detail
                results.append(result("error", error: detail?.stringValue ?? detail?.jsonText ?? "Something went wrong :/"))
            }
        }
        return JSONResponse.text(OrderedJSON.array(results))
    }
}
