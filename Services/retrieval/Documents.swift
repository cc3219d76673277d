// From a stored file to searchable chunks: text extraction (plain text, Markdown, JSON, CSV, HTML, and PDF
// through poppler's `pdftotext`), the original's splitting (Markdown header pass, then a recursive character
// splitter with CHUNK_SIZE and CHUNK_OVERLAP in characters).
import Foundation

enum TextExtractor {
    struct Unsupported: Error {
        var reason: String
    }

    static let textTypes: Set<String> = [
        "application/json", "application/xml", "application/x-yaml", "application/yaml", "application/javascript",
        "application/x-sh", "application/sql", "application/csv",
    ]

    /// The text of a file, or `Unsupported` with the reason the file shows as `failed`.
    static func text(of url: URL, name: String, contentType: String?) throws -> String {
        let type = (contentType ?? "").split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        let ext = (name as NSString).pathExtension.lowercased()
        if type == "application/pdf" || ext == "pdf" { return try pdfText(url) }
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw Unsupported(reason: "The uploaded file is missing.")
        }
        if type.hasPrefix("image/") || type.hasPrefix("audio/") {
            throw Unsupported(reason: "File type \(type) is not supported for processing")
        }
        guard let text = String(validating: data, as: UTF8.self) ?? String(bytes: data, encoding: .isoLatin1),
            !text.contains("\0")
        else { throw Unsupported(reason: "File type \(type.isEmpty ? ext : type) is not supported for processing") }
        if type == "text/html" || ext == "html" || ext == "htm" { return htmlText(text) }
        return text
    }

    /// Runs blocking work (file reads, `pdftotext`) on a thread of its own, off Swift's small cooperative pool.
    static func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try work() })
            }
        }
    }

    /// `pdftotext` (Debian's poppler-utils) on the file; a clear failure when it is missing or the PDF unreadable.
    static func pdfText(_ url: URL) throws -> String {
        let candidates = ["/usr/bin/pdftotext", "/usr/local/bin/pdftotext"]
        guard let tool = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw Unsupported(reason: "PDF text extraction needs pdftotext (poppler-utils), which is not installed.")
        }
        // Written to a file next to the PDF (no pipe to fill), killed after two minutes, read up to 64 MiB.
        let out = url.deletingLastPathComponent().appendingPathComponent(".text-" + UUID().uuidString)
        defer { try? FileManager.default.removeItem(at: out) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = ["-enc", "UTF-8", url.path, out.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(120)
        while process.isRunning {
            if Date() > deadline {
                process.terminate()
                throw Unsupported(reason: "The PDF took too long to read.")
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        guard process.terminationStatus == 0, let handle = try? FileHandle(forReadingFrom: out) else {
            throw Unsupported(reason: "The PDF could not be read.")
        }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: 64 << 20)) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// Visible text of an HTML page: scripts and styles dropped, tags removed, entities of the common kind decoded.
    static func htmlText(_ html: String) -> String {
        var text = withoutElements(html, ["script", "style"])
        text = text.replacingOccurrences(of: "<br\\s*/?>|</p>|</div>|</h[1-6]>|</li>", with: "\n", options: [.regularExpression, .caseInsensitive])
        text = text.replacingOccurrences(of: "<[^>]+>", with: "", options: .regularExpression)
        for (entity, value) in [("&nbsp;", " "), ("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#39;", "'"), ("&amp;", "&")] {
            text = text.replacingOccurrences(of: entity, with: value)
        }
        return text
    }
}

extension TextExtractor {
    /// `html` without the named elements and their content, found by a linear scan (no backtracking regex).
    static func withoutElements(_ html: String, _ names: [String]) -> String {
        var result = ""
        var rest = html[...]
        while let open = rest.range(of: "<", options: []) {
            result += rest[..<open.lowerBound]
            let tail = rest[open.upperBound...]
            if let name = names.first(where: { tail.prefix(8).lowercased().hasPrefix($0) }) {
                // An element never closed runs to the end of the page.
                guard let close = tail.range(of: "</" + name, options: .caseInsensitive) else { return result }
                rest = tail[close.upperBound...]
                if let end = rest.firstIndex(of: ">") { rest = rest[rest.index(after: end)...] }
                result += " "
            } else {
                result += "<"
                rest = tail
            }
        }
        return result + rest
    }
}

enum Chunker {
    /// The Markdown header pass: lines stripped, a header starts a section, blocks in a section joined with
    /// two spaces and a newline.
    static func sections(_ text: String) -> [String] {
        var sections: [String] = []
        var blocks: [[String]] = []
        var block: [String] = []
        var inFence = false
        func endBlock() {
            if !block.isEmpty { blocks.append(block) }
            block = []
        }
        func endSection() {
            endBlock()
            let joined = blocks.map { $0.joined(separator: "\n") }.joined(separator: "  \n")
            if !joined.isEmpty { sections.append(joined) }
            blocks = []
        }
        // Lines end at every line feed, also one inside a CR LF pair (a single Character to Swift), as the
        // original's `split("\n")` cuts them; the trim then drops the carriage return.
        for raw in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map(Substring.init) {
            // Trimmed of white space (by scalar, as Foundation trims), then without ASCII control characters (tabs
            // included). Standard library only: Foundation's string calls were most of this service's work.
            var line = String(trimmedWhitespace(raw))
            if line.utf8.contains(where: { $0 < 0x20 }) { line = line.filter { !($0.isASCII && $0 < " ") } }
            if line.hasPrefix("```") || line.hasPrefix("~~~") { inFence.toggle() }
            if !inFence, isHeader(line) {
                endSection()
                block = [line]
                continue
            }
            if line.isEmpty && !inFence {
                endBlock()
            } else {
                block.append(line)
            }
        }
        endSection()
        return sections
    }

    /// White space (Unicode's White_Space, the scalars of `CharacterSet.whitespacesAndNewlines`) cut from both ends.
    static func trimmedWhitespace(_ text: Substring) -> Substring {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return text[text.endIndex...] }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return Substring(scalars[first...last])
    }

    static func trimmedWhitespace(_ text: String) -> String { String(trimmedWhitespace(Substring(text))) }

    /// A Markdown header line: one to six `#` and a space.
    static func isHeader(_ line: String) -> Bool {
        var hashes = 0
        for byte in line.utf8 {
            if byte == UInt8(ascii: "#") {
                hashes += 1
                if hashes > 6 { return false }
            } else {
                return hashes > 0 && byte == UInt8(ascii: " ")
            }
        }
        return false
    }

    /// Recursive character splitting: separators `\n\n`, `\n`, ` `, then characters; pieces merged up to `size`
    /// with up to `overlap` characters carried into the next chunk.
    static func split(_ text: String, size: Int, overlap: Int) -> [String] {
        recursive(text, separators: ["\n\n", "\n", " ", ""], size: max(1, size), overlap: max(0, min(overlap, size - 1)))
    }

    static func recursive(_ text: String, separators: [String], size: Int, overlap: Int) -> [String] {
        var separator = separators.last ?? ""
        var rest: [String] = []
        var parts: [Substring] = []
        for (index, candidate) in separators.enumerated() {
            if candidate.isEmpty { separator = candidate; rest = []; break }
            if text.contains(candidate) {
                separator = candidate
                rest = Array(separators.dropFirst(index + 1))
                parts = text.split(separator: candidate, omittingEmptySubsequences: false)
                break
            }
        }
        // The separator stays at the start of the piece that follows it.
        var pieces: [String]
        if separator.isEmpty {
            pieces = text.map(String.init)
        } else {
            pieces = [String(parts[0])] + parts.dropFirst().map { separator + $0 }
        }
        pieces = pieces.filter { !$0.isEmpty }
        var chunks: [String] = []
        var good: [String] = []
        for piece in pieces {
            if piece.count < size {
                good.append(piece)
            } else {
                if !good.isEmpty {
                    chunks += merge(good, size: size, overlap: overlap)
                    good = []
                }
                if rest.isEmpty {
                    chunks.append(piece)
                } else {
                    chunks += recursive(piece, separators: rest, size: size, overlap: overlap)
                }
            }
        }
        if !good.isEmpty { chunks += merge(good, size: size, overlap: overlap) }
        return chunks
    }

    static func merge(_ pieces: [String], size: Int, overlap: Int) -> [String] {
        var chunks: [String] = []
        // The pieces of the chunk being built: `pieces[first..<next]` (no removal from the front: linear time).
        var first = 0
        var total = 0
        let counts = pieces.map(\.count)
        for next in pieces.indices {
            if total + counts[next] > size, first < next {
                let chunk = trimmedWhitespace(pieces[first..<next].joined())
                if !chunk.isEmpty { chunks.append(chunk) }
                while first < next, total > overlap || (total + counts[next] > size && total > 0) {
                    total -= counts[first]
                    first += 1
                }
            }
            total += counts[next]
        }
        let chunk = trimmedWhitespace(pieces[first...].joined())
        if !chunk.isEmpty { chunks.append(chunk) }
        return chunks
    }

    /// The chunks of a document with where each starts in its section (`start_index`).
    static func chunks(of text: String, size: Int, overlap: Int) -> [(text: String, start: Int)] {
        var result: [(String, Int)] = []
        for section in sections(text) {
            // Offsets are counted on from the previous chunk's start, so the whole section is walked once.
            var searchFrom = section.startIndex
            var offset = 0
            for chunk in split(section, size: size, overlap: overlap) {
                // Foundation's search only where the standard library's (by whole characters) finds nothing: a chunk
                // that starts with a combining mark split from its base.
                if let range = section[searchFrom...].firstRange(of: chunk) ?? section.range(of: chunk, range: searchFrom..<section.endIndex) {
                    offset += section.distance(from: searchFrom, to: range.lowerBound)
                    result.append((chunk, offset))
                    searchFrom = section.index(after: range.lowerBound)
                    offset += 1
                } else {
                    result.append((chunk, max(0, offset - 1)))
                }
            }
        }
        return result
    }
}
