// `GET /api/v1/chats/search`: words match titles and message text; `tag:`, `folder:`, `pinned:`,
// `archived:` and `shared:` filter, as the real server parses them.
import Foundation
import PostgresNIO
import Shared

struct ChatSearch: Sendable {
    var phrase = ""
    var terms: [String] = []
    var tags: [String] = []
    var noTags = false
    var folders: [String] = []
    var pinned: Bool?
    var archived = false
    var shared: Bool?
    /// The whole text is one `tag:` word (an empty result then drops the tag, as in the original).
    var singleTagQuery = false

    init(text: String) {
        let lowered = text.lowercased().trimmingCharacters(in: .whitespacesAndNewlines)
        singleTagQuery = !lowered.contains(" ") && lowered.hasPrefix("tag:")
        var words: [String] = []
        for token in lowered.split(whereSeparator: \.isWhitespace).map(String.init) {
            func value(_ prefix: String) -> String? { token.hasPrefix(prefix) ? String(token.dropFirst(prefix.count)) : nil }
            func flag(_ raw: String) -> Bool? { raw == "true" ? true : raw == "false" ? false : nil }
            if let tag = value("tag:") {
                if tag == "none" { noTags = true } else if !tag.isEmpty { tags.append(tag.replacingOccurrences(of: " ", with: "_")) }
            } else if let folder = value("folder:") {
                let name = Self.folderName(folder)
                if !name.isEmpty { folders.append(name) }
            } else if let raw = value("pinned:") {
                if let value = flag(raw) { pinned = value }
            } else if let raw = value("archived:") {
                if let value = flag(raw) { archived = value }
            } else if let raw = value("shared:") {
                if let value = flag(raw) { shared = value }
            } else {
                words.append(token)
            }
        }
        phrase = words.joined(separator: " ")
        var seen: Set<String> = []
        for term in phrase.split(whereSeparator: { !($0.isASCII && ($0.isLetter || $0.isNumber)) }).map(String.init)
        where term != phrase && seen.insert(term).inserted {
            terms.append(term)
        }
    }

    /// A folder name as `folder:` compares it: lowercased, runs of `_` and whitespace as one space.
    static func folderName(_ name: String) -> String {
        name.lowercased().split(whereSeparator: { $0 == "_" || $0.isWhitespace }).joined(separator: " ")
    }

    /// `ChatTitleIdResponse` with the search's real `archived` and its `snippet`.
    static func item(_ row: Row, snippet: String?) -> String {
        OrderedJSON.object([
            "id": .string(row.id), "title": .string(row.title), "updated_at": .int(row.updatedAt),
            "created_at": .int(row.createdAt), "last_read_at": JSONValue(row.lastReadAt), "snippet": JSONValue(snippet),
            "active": .bool(false), "archived": .bool(row.archived),
        ])
    }

    struct Row: Sendable {
        var id: String
        var title: String
        var updatedAt: Int
        var createdAt: Int
        var lastReadAt: Int?
        var archived: Bool
        var contents: [String]
    }

    /// About 200 characters of the first message that contains the phrase (or else one of its words),
    /// with `...` where it was cut.
    func snippet(in contents: [String]) -> String? {
        guard !phrase.isEmpty else { return nil }
        for needle in [phrase] + terms {
            for content in contents {
                let characters = Array(content)
                let lowered = Array(content.lowercased())
                guard lowered.count == characters.count, let index = Self.find(Array(needle), in: lowered) else { continue }
                var start = max(index - 100, 0)
                var end = min(start + 200, characters.count)
                if index + needle.count > end {
                    end = min(index + needle.count, characters.count)
                    start = max(end - 200, 0)
                }
                var text = String(characters[start..<end]).split(whereSeparator: \.isWhitespace).joined(separator: " ")
                if start > 0 { text = "..." + text }
                if end < characters.count { text += "..." }
                return text
            }
        }
        return nil
    }

    static func find(_ needle: [Character], in haystack: [Character]) -> Int? {
        guard !needle.isEmpty, needle.count <= haystack.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if haystack[start..<(start + needle.count)].elementsEqual(needle) { return start }
        }
        return nil
    }
}

extension ChatStore {
    static let historyMessages =
        "(CASE WHEN jsonb_typeof(c.chat -> 'history' -> 'messages') = 'object' THEN c.chat -> 'history' -> 'messages' ELSE '{}'::jsonb END)"
    static let legacyMessages =
        "(CASE WHEN jsonb_typeof(c.chat -> 'messages') = 'array' THEN c.chat -> 'messages' ELSE '[]'::jsonb END)"

    /// SQL that is true when the title or any message's text contains the LIKE pattern bound at `placeholder`.
    static func matches(_ placeholder: String) -> String {
        """
        (c.title ILIKE \(placeholder) OR EXISTS (SELECT 1 FROM jsonb_each(\(historyMessages)) m
            WHERE jsonb_typeof(m.value -> 'content') = 'string' AND lower(m.value ->> 'content') LIKE \(placeholder))
        OR EXISTS (SELECT 1 FROM jsonb_array_elements(\(legacyMessages)) e
            WHERE jsonb_typeof(e -> 'content') = 'string' AND lower(e ->> 'content') LIKE \(placeholder)))
        """
    }

    func search(_ search: ChatSearch, userID: String, folderIDs: [String]?, offset: Int) async throws -> [ChatSearch.Row] {
        var sql = SQLBuilder(
            """
            SELECT c.id, c.title, c.updated_at, c.created_at, c.last_read_at, c.archived,
                (SELECT coalesce(json_agg(m.value -> 'content'), '[]') FROM jsonb_each(\(Self.historyMessages)) m
                    WHERE jsonb_typeof(m.value -> 'content') = 'string')::text,
                (SELECT coalesce(json_agg(e -> 'content'), '[]') FROM jsonb_array_elements(\(Self.legacyMessages)) e
                    WHERE jsonb_typeof(e -> 'content') = 'string')::text
            FROM chat.chats c WHERE NOT c.internal AND c.user_id =
            """)
        sql.bind(userID)
        sql.append(" AND c.archived = \(search.archived)")
        if let pinned = search.pinned { sql.append(" AND c.pinned = \(pinned)") }
        if let shared = search.shared { sql.append(shared ? " AND c.share_id IS NOT NULL" : " AND c.share_id IS NULL") }
        for tag in search.tags {
            sql.append(" AND c.meta -> 'tags' ? ")
            sql.bind(tag)
        }
        if search.noTags {
            sql.append(" AND (jsonb_typeof(c.meta -> 'tags') IS DISTINCT FROM 'array' OR jsonb_array_length(c.meta -> 'tags') = 0)")
        }
        if let folderIDs {
            sql.append(" AND c.folder_id = ANY(")
            sql.bind(folderIDs)
            sql.append(")")
        }
        var exact: String?
        if !search.phrase.isEmpty {
            let phrase = Self.matches(sql.placeholder(for: "%" + search.phrase.likeEscaped + "%"))
            exact = phrase
            let terms = search.terms.map { Self.matches(sql.placeholder(for: "%" + $0.likeEscaped + "%")) }
            sql.append(" AND (\(phrase)")
            if !terms.isEmpty { sql.append(" OR (" + terms.joined(separator: " AND ") + ")") }
            sql.append(")")
        }
        sql.append(" ORDER BY \(exact.map { "\($0) DESC, " } ?? "")c.updated_at DESC, c.id LIMIT 60 OFFSET \(offset)")
        let rows = try await postgres.query(sql.query, logger: logger)
        var result: [ChatSearch.Row] = []
        for try await (id, title, updated, created, lastRead, archived, history, legacy) in rows.decode(
            (String, String, Int, Int, Int?, Bool, String, String).self)
        {
            func strings(_ text: String) -> [String] {
                guard case .array(let items)? = JSONValue.parse(text) else { return [] }
                return items.compactMap(\.stringValue)
            }
            let fromHistory = strings(history)
            result.append(
                ChatSearch.Row(
                    id: id, title: title, updatedAt: updated, createdAt: created, lastReadAt: lastRead, archived: archived,
                    contents: fromHistory.isEmpty ? strings(legacy) : fromHistory))
        }
        return result
    }
}
