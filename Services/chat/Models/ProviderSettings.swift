// The provider connections: OpenAI-compatible base URLs with keys and Ollama base URLs, each with its own
// per-connection config, read from the environment Open WebUI reads and overridden by what an admin saves
// through `/openai/config/update` and `/ollama/config/update` (kept in `chat.settings`).
import Foundation
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Shared

/// One OpenAI-compatible connection.
struct OpenAIConnection: Sendable {
    var index: Int
    var url: String
    var key: String
    var config: [String: JSONValue]

    var enabled: Bool { config["enable"]?.boolValue ?? true }
    var prefixID: String? { config["prefix_id"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } }

    /// `Authorization` for this connection: the key as a bearer token unless `auth_type` says none.
    var authorization: String? {
        let authType = config["auth_type"]?.stringValue ?? "bearer"
        guard authType == "bearer", !key.isEmpty else { return nil }
        return "Bearer " + key
    }
}

/// One Ollama connection.
struct OllamaConnection: Sendable {
    var index: Int
    var url: String
    var config: [String: JSONValue]

    var enabled: Bool { config["enable"]?.boolValue ?? true }
    var prefixID: String? { config["prefix_id"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } }
    var authorization: String? {
        guard let key = config["key"]?.stringValue, !key.isEmpty else { return nil }
        return "Bearer " + key
    }
}

/// Both providers' settings in the shapes of `/openai/config` and `/ollama/config`.
struct ProviderSettings: Sendable {
    var enableOpenAI: Bool?
    var openAIURLs: [String]
    var openAIKeys: [String]
    var openAIConfigs: [String: JSONValue]
    var enableOllama: Bool?
    var ollamaURLs: [String]
    var ollamaConfigs: [String: JSONValue]

    static let openAIKey = "providers.openai"
    static let ollamaKey = "providers.ollama"

    /// What the environment says, as Open WebUI parses it.
    static func fromEnvironment(_ env: Shared.Environment) -> ProviderSettings {
        func list(_ name: String) -> [String]? {
            env.string(name).map { $0.split(separator: ";", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) } }
        }
        var urls = list("OPENAI_API_BASE_URLS")
            ?? [env.string("OPENAI_API_BASE_URL").map(trimmingSlash) ?? "https://api.openai.com/v1"]
        urls = urls.map { $0.isEmpty ? "https://api.openai.com/v1" : $0 }
        let keys = list("OPENAI_API_KEYS") ?? [env.string("OPENAI_API_KEY", default: "")]
        var ollama = list("OLLAMA_BASE_URLS")
        if ollama == nil {
            var single = trimmingSlash(env.string("OLLAMA_BASE_URL", default: ""))
            if single.isEmpty || single == "/ollama" {
                let api = env.string("OLLAMA_API_BASE_URL", default: "http://localhost:11434/api")
                single = api.hasSuffix("/api") ? String(api.dropLast(4)) : api
            }
            ollama = [single]
        }
        return ProviderSettings(
            enableOpenAI: env.bool("ENABLE_OPENAI_API", default: true),
            openAIURLs: urls, openAIKeys: fitted(keys, to: urls.count),
            openAIConfigs: JSONValue.parse(env.string("OPENAI_API_CONFIGS", default: "{}"))?.objectValue ?? [:],
            enableOllama: env.bool("ENABLE_OLLAMA_API", default: true), ollamaURLs: ollama ?? [],
            ollamaConfigs: JSONValue.parse(env.string("OLLAMA_API_CONFIGS", default: "{}"))?.objectValue ?? [:])
    }

    static func trimmingSlash(_ url: String) -> String {
        url.hasSuffix("/") ? String(url.dropLast()) : url
    }

    /// Keys cut or padded with empty ones to one per URL.
    static func fitted(_ keys: [String], to count: Int) -> [String] {
        keys.count >= count ? Array(keys.prefix(count)) : keys + Array(repeating: "", count: count - keys.count)
    }

    /// Per-connection configs keyed by connection index (`"0"`, `"1"`, ...), others dropped.
    static func indexed(_ configs: [String: JSONValue], count: Int) -> [String: JSONValue] {
        configs.filter { key, _ in Int(key).map { (0..<count).contains($0) && String($0) == key } ?? false }
    }

    var openAI: [OpenAIConnection] {
        guard enableOpenAI == true else { return [] }
        return openAIURLs.enumerated().map { index, url in
            OpenAIConnection(
                index: index, url: url, key: index < openAIKeys.count ? openAIKeys[index] : "",
                config: (openAIConfigs[String(index)] ?? openAIConfigs[url])?.objectValue ?? [:])
        }
    }

    var ollama: [OllamaConnection] {
        guard enableOllama == true else { return [] }
        return ollamaURLs.enumerated().map { index, url in
            OllamaConnection(index: index, url: url, config: (ollamaConfigs[String(index)] ?? ollamaConfigs[url])?.objectValue ?? [:])
        }
    }

    var openAIJSON: String {
        OrderedJSON.object([
            ("ENABLE_OPENAI_API", enableOpenAI.map(JSONValue.bool) ?? .null),
            ("OPENAI_API_BASE_URLS", .array(openAIURLs.map(JSONValue.string))),
            ("OPENAI_API_KEYS", .array(openAIKeys.map(JSONValue.string))),
            ("OPENAI_API_CONFIGS", .object(openAIConfigs)),
        ])
    }

    var ollamaJSON: String {
        OrderedJSON.object([
            ("ENABLE_OLLAMA_API", enableOllama.map(JSONValue.bool) ?? .null),
            ("OLLAMA_BASE_URLS", .array(ollamaURLs.map(JSONValue.string))),
            ("OLLAMA_API_CONFIGS", .object(ollamaConfigs)),
        ])
    }

    /// The stored overrides applied over the environment's values.
    mutating func apply(openAI stored: [String: JSONValue]) {
        guard !stored.isEmpty else { return }
        enableOpenAI = stored["ENABLE_OPENAI_API"]?.boolValue
        openAIURLs = stored["OPENAI_API_BASE_URLS"]?.arrayValue?.compactMap(\.stringValue) ?? openAIURLs
        openAIKeys = Self.fitted(stored["OPENAI_API_KEYS"]?.arrayValue?.compactMap(\.stringValue) ?? openAIKeys, to: openAIURLs.count)
        openAIConfigs = stored["OPENAI_API_CONFIGS"]?.objectValue ?? openAIConfigs
    }

    mutating func apply(ollama stored: [String: JSONValue]) {
        guard !stored.isEmpty else { return }
        enableOllama = stored["ENABLE_OLLAMA_API"]?.boolValue
        ollamaURLs = stored["OLLAMA_BASE_URLS"]?.arrayValue?.compactMap(\.stringValue) ?? ollamaURLs
        ollamaConfigs = stored["OLLAMA_API_CONFIGS"]?.objectValue ?? ollamaConfigs
    }
}

/// The current settings: the environment's, overridden by the stored ones, re-read every few seconds so every
/// replica follows an admin's change; a change made here applies at once.
final class ProviderSettingsStore: Sendable {
    let base: ProviderSettings
    let store: ChatStore
    private let cached = NIOLockedValueBox<(ProviderSettings, ContinuousClock.Instant)?>(nil)
    /// Bumped on every change seen, so caches built from older settings know they are stale.
    let generation = ManagedAtomicCounter()
    static let lifetime = Duration.seconds(2)

    init(base: ProviderSettings, store: ChatStore) {
        self.base = base
        self.store = store
    }

    func current() async throws -> ProviderSettings {
        let now = ContinuousClock.now
        if let (settings, loaded) = cached.withLockedValue({ $0 }), now - loaded < Self.lifetime { return settings }
        var settings = base
        settings.apply(openAI: try await store.settings(ProviderSettings.openAIKey))
        settings.apply(ollama: try await store.settings(ProviderSettings.ollamaKey))
        let changed = cached.withLockedValue { cached -> Bool in
            defer { cached = (settings, now) }
            guard let old = cached?.0 else { return false }
            return old.openAIJSON != settings.openAIJSON || old.ollamaJSON != settings.ollamaJSON
        }
        if changed { generation.increment() }
        return settings
    }

    func save(_ settings: ProviderSettings, openAI: Bool) async throws {
        if openAI {
            try await store.saveSettings(ProviderSettings.openAIKey, JSONValue.parse(settings.openAIJSON)?.objectValue ?? [:])
        } else {
            try await store.saveSettings(ProviderSettings.ollamaKey, JSONValue.parse(settings.ollamaJSON)?.objectValue ?? [:])
        }
        cached.withLockedValue { $0 = (settings, ContinuousClock.now) }
        generation.increment()
    }
}

/// A counter read and bumped from any thread.
final class ManagedAtomicCounter: Sendable {
    private let value = NIOLockedValueBox(0)
    func increment() { value.withLockedValue { $0 += 1 } }
    var current: Int { value.withLockedValue { $0 } }
}
