// Builds a parameterised query from pieces, for queries whose filters depend on the request.
import PostgresNIO

/// SQL text with numbered binds; values always travel as binds, never inside the text.
public struct SQLBuilder: Sendable {
    public private(set) var text: String
    public private(set) var binds = PostgresBindings()

    public init(_ text: String = "") {
        self.text = text
    }

    /// Appends SQL text that contains no user input.
    public mutating func append(_ sql: String) {
        text += sql
    }

    /// Appends a bind placeholder for the value.
    public mutating func bind<Value: PostgresDynamicTypeEncodable>(_ value: Value) {
        binds.append(value)
        text += "$\(binds.count)"
    }

    public mutating func bind<Value: PostgresDynamicTypeEncodable>(_ value: Value?) {
        binds.append(value)
        text += "$\(binds.count)"
    }

    /// Binds a value and returns its placeholder without appending it, for a value used more than once.
    public mutating func placeholder<Value: PostgresDynamicTypeEncodable>(for value: Value) -> String {
        binds.append(value)
        return "$\(binds.count)"
    }

    /// The same for a value that may be NULL.
    public mutating func placeholder<Value: PostgresDynamicTypeEncodable>(for value: Value?) -> String {
        binds.append(value)
        return "$\(binds.count)"
    }

    public var query: PostgresQuery { PostgresQuery(unsafeSQL: text, binds: binds) }
}
