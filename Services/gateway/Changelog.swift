// `GET /api/changelog`: the newest five versions of Open WebUI's CHANGELOG.md (unpacked beside the web app by the
// set-up), in the original's shape: `{version: {date, <section>: [{title, content, raw}]}}`, where `raw` is the
// item as HTML, `content` its text, and `title` the text before the first ": " when there is one.
import Foundation
import Shared

enum Changelog {
    /// The JSON answer for the changelog file at `path` (`{}` when there is none).
    static func json(at path: String, versions: Int = 5) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "{}" }
        return json(markdown: text, versions: versions)
    }

    static func json(markdown: String, versions: Int) -> String {
        var entries: [(version: String, date: String, sections: [(name: String, items: [String])])] = []
        var item: String?
        func endItem() {
            guard let text = item, !entries.isEmpty, !entries[entries.count - 1].sections.isEmpty else { item = nil; return }
            let last = entries.count - 1
            entries[last].sections[entries[last].sections.count - 1].items.append(text)
            item = nil
        }
        for raw in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("## ") {
                endItem()
                if entries.count == versions { break }
                let heading = line.dropFirst(3)
                let parts = heading.components(separatedBy: " - ")
                var version = parts[0].trimmingCharacters(in: .whitespaces)
                if version.hasPrefix("[") && version.hasSuffix("]") { version = String(version.dropFirst().dropLast()) }
                entries.append((version, parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : "", []))
            } else if line.hasPrefix("### ") {
                endItem()
                guard !entries.isEmpty else { continue }
                entries[entries.count - 1].sections.append((line.dropFirst(4).trimmingCharacters(in: .whitespaces).lowercased(), []))
            } else if line.hasPrefix("- ") || line.hasPrefix("* ") {
                endItem()
                item = String(line.dropFirst(2))
            } else if line.isEmpty {
                endItem()
            } else if item != nil {
                item! += " " + line
            }
        }
        endItem()
        let versionsJSON = entries.map { entry -> String in
            var fields = [#""date":"# + JSONValue.string(entry.date).jsonText]
            for section in entry.sections {
                fields.append(JSONValue.string(section.name).jsonText + ":[" + section.items.map(itemJSON).joined(separator: ",") + "]")
            }
            return JSONValue.string(entry.version).jsonText + ":{" + fields.joined(separator: ",") + "}"
        }
        return "{" + versionsJSON.joined(separator: ",") + "}"
    }

    /// One list item: its HTML, its text (text pieces trimmed and joined by spaces) split at the first ": ".
    static func itemJSON(_ markdown: String) -> String {
        let (html, pieces) = render(markdown)
        let text = pieces.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }.joined(separator: " ")
        var title = ""
        var content = text
        if let colon = text.range(of: ": ") {
            title = text[..<colon.lowerBound].trimmingCharacters(in: .whitespaces)
            content = text[colon.upperBound...].trimmingCharacters(in: .whitespaces)
        }
        return OrderedJSON.object([("title", .string(title)), ("content", .string(content)), ("raw", .string("<li>" + html + "</li>"))])
    }

    static func escaped(_ text: Substring) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }

    /// Inline Markdown (`**strong**`, `` `code` ``, `[text](url)`) as HTML, with the text between tags.
    static func render(_ markdown: String) -> (html: String, pieces: [String]) {
        var html = ""
        var pieces: [String] = []
        var current = ""
        var rest = Substring(markdown)
        var strong = false
        func flush() {
            pieces.append(current)
            current = ""
        }
        while let first = rest.first {
            if rest.hasPrefix("**") {
                flush()
                html += strong ? "</strong>" : "<strong>"
                strong.toggle()
                rest = rest.dropFirst(2)
            } else if first == "`", let end = rest.dropFirst().firstIndex(of: "`") {
                flush()
                let code = rest[rest.index(after: rest.startIndex)..<end]
                html += "<code>" + escaped(code) + "</code>"
                pieces.append(String(code))
                rest = rest[rest.index(after: end)...]
            } else if first == "[", let close = rest.firstIndex(of: "]"), rest[rest.index(after: close)...].hasPrefix("("),
                let paren = rest[close...].firstIndex(of: ")")
            {
                flush()
                let label = rest[rest.index(after: rest.startIndex)..<close]
                let url = rest[rest.index(close, offsetBy: 2)..<paren]
                html += "<a href=\"" + escaped(url).replacingOccurrences(of: "\"", with: "&quot;") + "\">" + escaped(label) + "</a>"
                pieces.append(String(label))
                rest = rest[rest.index(after: paren)...]
            } else {
                html += escaped(rest.prefix(1))
                current.append(first)
                rest = rest.dropFirst()
            }
        }
        if strong { html += "</strong>" }
        flush()
        return (html, pieces)
    }
}
