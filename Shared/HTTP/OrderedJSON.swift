// JSON objects whose keys come out in a fixed order (Foundation's encoder does not keep the order of
// `encode` calls on Linux), so bodies built in Swift read like the real server's.
import Foundation

public enum OrderedJSON {
    /// `{"k1": v1, "k2": v2, ...}` in the order given.
    public static func object(_ pairs: KeyValuePairs<String, JSONValue>) -> String {
        "{" + pairs.map { JSONValue.string($0.key).jsonText + ":" + $0.value.jsonText }.joined(separator: ",") + "}"
    }

    /// The same, from pairs gathered at run time.
    public static func object(_ pairs: [(String, JSONValue)]) -> String {
        "{" + pairs.map { JSONValue.string($0.0).jsonText + ":" + $0.1.jsonText }.joined(separator: ",") + "}"
    }

    /// An encoded object with more keys after its own (`{"a":1}` + b -> `{"a":1,"b":...}`).
    public static func appending(_ encoded: String, _ pairs: [(String, JSONValue)]) -> String {
        appending(encoded, raw: pairs.map { ($0.0, $0.1.jsonText) })
    }

    /// The same with values that are already JSON text (which keeps their own key order).
    public static func appending(_ encoded: String, raw pairs: [(String, String)]) -> String {
        guard encoded.hasSuffix("}"), !pairs.isEmpty else { return encoded }
        let added = pairs.map { JSONValue.string($0.0).jsonText + ":" + $0.1 }.joined(separator: ",")
        return encoded.dropLast() + (encoded == "{}" ? "" : ",") + added + "}"
    }

    /// An encoded object with the keys of another encoded object after its own.
    public static func appending(_ encoded: String, rawObject: String) -> String {
        guard encoded.hasSuffix("}"), let open = rawObject.firstIndex(of: "{"), let close = rawObject.lastIndex(of: "}"),
            open < close
        else { return encoded }
        let added = rawObject[rawObject.index(after: open)..<close]
        guard added.contains(where: { !$0.isWhitespace }) else { return encoded }
        return encoded.dropLast() + (encoded == "{}" ? "" : ",") + String(added) + "}"
    }

    /// A JSON array of already-encoded items.
    public static func array(_ items: [String]) -> String {
        "[" + items.joined(separator: ",") + "]"
    }
}

extension JSONValue {
    /// `.string`, or `.null` for nil.
    public init(_ text: String?) {
        self = text.map(JSONValue.string) ?? .null
    }

    /// `.int`, or `.null` for nil.
    public init(_ number: Int?) {
        self = number.map(JSONValue.int) ?? .null
    }
}

extension JSONValue {
    /// Whether the leaf at a dotted path (a permission such as `sharing.notes`) is truthy.
    public func allows(_ path: String) -> Bool {
        var current: JSONValue? = self
        for part in path.split(separator: ".") { current = current?[String(part)] }
        return current?.isTruthy ?? false
    }

    /// Python truthiness.
    public var isTruthy: Bool {
        switch self {
        case .null: false
        case .bool(let value): value
        case .int(let value): value != 0
        case .double(let value): value != 0
        case .string(let value): !value.isEmpty
        case .array(let value): !value.isEmpty
        case .object(let value): !value.isEmpty
        }
    }
}
