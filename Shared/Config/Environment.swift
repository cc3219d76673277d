// Reads typed settings from the process environment, once, at start.
import Foundation

/// Typed access to environment variables, with Open WebUI's conventions for booleans and durations.
public struct Environment: Sendable {
    public let values: [String: String]

    public init(_ values: [String: String] = ProcessInfo.processInfo.environment) {
        self.values = values
    }

    public func string(_ name: String) -> String? {
        guard let value = values[name], !value.isEmpty else { return nil }
        return value
    }

    public func string(_ name: String, default defaultValue: String) -> String {
        string(name) ?? defaultValue
    }

    public func int(_ name: String, default defaultValue: Int) -> Int {
        string(name).flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } ?? defaultValue
    }

    /// Open WebUI treats "true" (any case) as true and anything else as false.
    public func bool(_ name: String, default defaultValue: Bool) -> Bool {
        guard let value = string(name) else { return defaultValue }
        return ["true", "1", "yes", "on"].contains(value.lowercased())
    }
}
