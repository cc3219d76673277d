// `multipart/form-data` bodies read whole (small forms: skill imports); each part's name, file name, type and bytes.
import Foundation

public struct MultipartPart: Sendable {
    public var name: String
    public var filename: String?
    public var contentType: String?
    public var data: [UInt8]

    public var text: String { String(decoding: data, as: UTF8.self) }
}

public enum Multipart {
    /// The `boundary` parameter of a `multipart/form-data` content type.
    public static func boundary(from contentType: String?) -> String? {
        guard let contentType, contentType.lowercased().hasPrefix("multipart/form-data") else { return nil }
        for parameter in contentType.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2, pair[0].lowercased() == "boundary" else { continue }
            let value = pair[1].hasPrefix("\"") && pair[1].hasSuffix("\"") && pair[1].count >= 2
                ? String(pair[1].dropFirst().dropLast()) : pair[1]
            // RFC 2046 allows at most 70 characters (a longer one only slows the search down).
            return value.isEmpty || value.count > 70 ? nil : value
        }
        return nil
    }

    struct Malformed: Error {}

    /// The parts of `body`; throws when the body is not a well-formed multipart body with this boundary.
    public static func parse(_ body: [UInt8], boundary: String) throws -> [MultipartPart] {
        let delimiter = Array(("--" + boundary).utf8)
        guard var position = find(delimiter, in: body, from: 0) else { throw Malformed() }
        var parts: [MultipartPart] = []
        while true {
            position += delimiter.count
            // `--` after a delimiter ends the body.
            if position + 2 <= body.count, body[position] == 0x2D, body[position + 1] == 0x2D { break }
            guard position + 2 <= body.count, body[position] == 0x0D, body[position + 1] == 0x0A else { throw Malformed() }
            position += 2
            guard let headerEnd = find([0x0D, 0x0A, 0x0D, 0x0A], in: body, from: position) else { throw Malformed() }
            let headers = String(decoding: body[position..<headerEnd], as: UTF8.self)
            let contentStart = headerEnd + 4
            guard let next = find([0x0D, 0x0A] + delimiter, in: body, from: contentStart) else { throw Malformed() }
            var part = MultipartPart(name: "", filename: nil, contentType: nil, data: Array(body[contentStart..<next]))
            for line in headers.components(separatedBy: "\r\n") {
                let pair = line.split(separator: ":", maxSplits: 1)
                guard pair.count == 2 else { continue }
                let value = pair[1].trimmingCharacters(in: .whitespaces)
                switch pair[0].lowercased() {
                case "content-disposition":
                    part.name = parameter("name", in: value) ?? ""
                    part.filename = parameter("filename", in: value)
                case "content-type":
                    part.contentType = value
                default:
                    break
                }
            }
            parts.append(part)
            position = next + 2
        }
        return parts
    }

    /// `name="value"` (or unquoted) in a header value.
    static func parameter(_ name: String, in value: String) -> String? {
        for item in value.split(separator: ";").dropFirst() {
            let pair = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2, pair[0].lowercased() == name else { continue }
            let raw = pair[1]
            if raw.hasPrefix("\""), raw.hasSuffix("\""), raw.count >= 2 {
                return String(raw.dropFirst().dropLast()).replacingOccurrences(of: "\\\"", with: "\"")
            }
            return raw
        }
        return nil
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count, start <= haystack.count - needle.count else { return nil }
        let first = needle[0]
        var index = start
        let last = haystack.count - needle.count
        while index <= last {
            if haystack[index] == first, haystack[index..<(index + needle.count)].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }
}
