// JSON objects built in Swift whose keys keep their order on the wire.

/// An object whose keys keep the order they were set in (replacing a key keeps its place); nested objects may
/// keep their own order too.
public struct OrderedObject: Sendable {
    public indirect enum Node: Sendable {
        case value(JSONValue)
        case ordered(OrderedObject)
        case list([OrderedObject])

        public var value: JSONValue {
            switch self {
            case .value(let value): return value
            case .ordered(let object): return object.value
            case .list(let items): return .array(items.map(\.value))
            }
        }

        public var text: String {
            switch self {
            case .value(let value): return value.jsonText
            case .ordered(let object): return object.text
            case .list(let items): return "[" + items.map(\.text).joined(separator: ",") + "]"
            }
        }
    }

    public var pairs: [(String, Node)] = []

    public init(_ pairs: [(String, JSONValue)] = []) { self.pairs = pairs.map { ($0.0, .value($0.1)) } }

    public subscript(key: String) -> JSONValue? {
        get { pairs.first { $0.0 == key }?.1.value }
        set { set(key, newValue.map(Node.value)) }
    }

    public mutating func set(_ key: String, _ node: Node?) {
        if let index = pairs.firstIndex(where: { $0.0 == key }) {
            if let node { pairs[index].1 = node } else { pairs.remove(at: index) }
        } else if let node {
            pairs.append((key, node))
        }
    }

    public mutating func set(_ key: String, ordered: OrderedObject) { set(key, .ordered(ordered)) }

    /// An unordered object's keys: `first` in that order where present, then the rest sorted.
    public init(_ object: [String: JSONValue], first: [String]) {
        let leading = first.compactMap { key in object[key].map { (key, $0) } }
        self.init(leading + object.keys.filter { !first.contains($0) }.sorted().map { ($0, object[$0]!) })
    }

    public var text: String {
        "{" + pairs.map { JSONValue.string($0.0).jsonText + ":" + $0.1.text }.joined(separator: ",") + "}"
    }

    public var value: JSONValue { .object(Dictionary(pairs.map { ($0.0, $0.1.value) }, uniquingKeysWith: { _, last in last })) }
}

