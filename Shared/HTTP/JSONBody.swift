// Decodes request bodies into API types, reporting failures the way FastAPI does (422 with a list).
import Foundation
import HTTPTypes
import Hummingbird

/// Limits and decoding for JSON request bodies.
public enum JSONBody {
    /// Largest JSON body a service accepts by default (1 MiB).
    public static let defaultLimit = 1 << 20

    /// Collects the body, refusing more than `limit` bytes with 413.
    public static func collect(_ request: Request, limit: Int = defaultLimit) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError.bodyTooLarge
        } catch is APIError {
            throw APIError.bodyTooLarge
        } catch {
            // Hummingbird reports an over-long body as a generic error on some paths.
            throw APIError.bodyTooLarge
        }
    }

    /// Decodes a JSON body as `T`; malformed or mistyped bodies become FastAPI's 422 list.
    public static func decode<T: Decodable>(
        _ type: T.Type, from request: Request, limit: Int = defaultLimit
    ) async throws -> T {
        let buffer = try await collect(request, limit: limit)
        return try decode(type, from: Data(buffer: buffer))
    }

    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        // A trailing comma, which Foundation would accept, is malformed JSON like any other.
        guard !hasTrailingComma(data), let input = try? JSONDecoder().decode(JSONValue.self, from: data) else {
            throw APIError.validation([
                ValidationIssue(
                    type: "json_invalid", loc: [.string("body"), .int(data.count)], msg: "JSON decode error",
                    input: .object([:]), ctx: .object(["error": .string("Expecting value")]))
            ])
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as DecodingError {
            throw APIError.validation([issue(for: error, input: input)])
        }
    }

    /// Foundation accepts `{"a": 1,}`; strict JSON (and the real server) does not.
    static func hasTrailingComma(_ data: Data) -> Bool {
        var inString = false
        var escaped = false
        var pendingComma = false
        for byte in data {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch byte {
            case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"):
                continue
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                if pendingComma { return true }
            case UInt8(ascii: "\""):
                inString = true
            default:
                break
            }
            pendingComma = byte == UInt8(ascii: ",")
        }
        return false
    }

    static func issue(for error: DecodingError, input: JSONValue) -> ValidationIssue {
        func location(_ path: [any CodingKey]) -> [JSONValue] {
            [.string("body")] + path.map { key in key.intValue.map(JSONValue.int) ?? .string(key.stringValue) }
        }
        func value(at path: [any CodingKey]) -> JSONValue {
            var current = input
            for key in path {
                if let index = key.intValue, case .array(let items) = current, index < items.count {
                    current = items[index]
                } else if let next = current[key.stringValue] {
                    current = next
                } else {
                    return .null
                }
            }
            return current
        }
        switch error {
        case .keyNotFound(let key, let context):
            let path = context.codingPath
            return ValidationIssue(
                type: "missing", loc: location(path + [key]), msg: "Field required", input: value(at: path))
        case .valueNotFound(let expected, let context), .typeMismatch(let expected, let context):
            let (kind, message) = describe(expected)
            let path = context.codingPath
            return ValidationIssue(type: kind, loc: location(path), msg: message, input: value(at: path))
        case .dataCorrupted(let context):
            return ValidationIssue(
                type: "value_error", loc: location(context.codingPath),
                msg: "Value error, \(context.debugDescription)", input: value(at: context.codingPath))
        @unknown default:
            return ValidationIssue(type: "value_error", loc: [.string("body")], msg: "Invalid body", input: input)
        }
    }

    static func describe(_ type: Any.Type) -> (String, String) {
        switch type {
        case is String.Type: return ("string_type", "Input should be a valid string")
        case is Int.Type: return ("int_type", "Input should be a valid integer")
        case is Bool.Type: return ("bool_type", "Input should be a valid boolean")
        case is Double.Type: return ("float_type", "Input should be a valid number")
        default:
            let name = String(describing: type)
            if name.hasPrefix("Array") { return ("list_type", "Input should be a valid list") }
            return ("dict_type", "Input should be a valid dictionary")
        }
    }
}

extension JSONBody {
    /// FastAPI's 422 for a body that is JSON but not an object.
    public static func notDictionary(_ input: JSONValue) -> APIError {
        APIError.validation([
            ValidationIssue(type: "dict_type", loc: [.string("body")], msg: "Input should be a valid dictionary", input: input)
        ])
    }

    /// A body that must be a JSON object (any keys).
    public static func object(_ request: Request, limit: Int = defaultLimit) async throws -> [String: JSONValue] {
        let value = try await decode(JSONValue.self, from: request, limit: limit)
        guard case .object(let object) = value else { throw notDictionary(value) }
        return object
    }

    /// FastAPI's answer to keys a form forbids (`extra='forbid'`): 422 `extra_forbidden` for each.
    public static func rejectExtraKeys(_ body: JSONValue, allowed: Set<String>) throws {
        guard case .object(let object) = body else { return }
        let issues = object.keys.sorted().filter { !allowed.contains($0) }.map { key in
            ValidationIssue(
                type: "extra_forbidden", loc: [.string("body"), .string(key)], msg: "Extra inputs are not permitted",
                input: object[key] ?? .null)
        }
        if !issues.isEmpty { throw APIError.validation(issues) }
    }

    /// FastAPI's answer to a missing or non-boolean query parameter value.
    public static func queryBool(_ raw: String?, name: String, default value: Bool) throws -> Bool {
        guard let raw else { return value }
        switch raw.lowercased() {
        case "true", "1", "yes", "on", "t", "y": return true
        case "false", "0", "no", "off", "f", "n": return false
        default:
            throw APIError.validation([
                ValidationIssue(
                    type: "bool_parsing", loc: [.string("query"), .string(name)],
                    msg: "Input should be a valid boolean, unable to interpret input", input: .string(raw))
            ])
        }
    }

    /// FastAPI's answer to a non-integer query parameter value.
    public static func queryInt(_ raw: String?, name: String) throws -> Int? {
        guard let raw else { return nil }
        guard let value = Int(raw) else {
            throw APIError.validation([
                ValidationIssue(
                    type: "int_parsing", loc: [.string("query"), .string(name)],
                    msg: "Input should be a valid integer, unable to parse string as an integer", input: .string(raw))
            ])
        }
        return value
    }
}

extension Request {
    /// A query parameter decoded as HTML forms encode it (`+` is a space), as FastAPI reads it.
    public func queryValue(_ name: String) -> String? {
        guard let query = uri.query else { return nil }
        let ampersand = UInt8(ascii: "&")
        let equals = UInt8(ascii: "=")
        for pair in query.utf8.split(separator: ampersand, omittingEmptySubsequences: true) {
            let separator = pair.firstIndex(of: equals)
            guard Self.formDecoded(pair[..<(separator ?? pair.endIndex)]) == name else { continue }
            guard let separator else { return "" }
            let value = pair[pair.index(after: separator)...]
            return Self.formDecoded(value) ?? String(decoding: value, as: UTF8.self)
        }
        return nil
    }

    /// `+` as a space and `%XX` escapes undone (nil for a broken escape); plain text, the usual case, is
    /// taken as it is without Foundation's slower path (the chat list reads five parameters per request).
    static func formDecoded(_ bytes: Substring.UTF8View.SubSequence) -> String? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard bytes.contains(where: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "%") }) else { return text }
        return text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }
}
