// The persistent admin configuration (`/api/v1/auths/admin/config`) and its defaults from the environment.
import Foundation
import Shared

/// Admin config values by their API names (`ENABLE_SIGNUP`, ...). Environment values are the defaults;
/// what an admin saved wins, as Open WebUI's PersistentConfig does.
struct AdminConfig: Sendable, Equatable {
    var values: [String: JSONValue]
    /// Default permissions filled in, and their JSON text: computed once per load, used on every session read.
    private(set) var permissions: JSONValue = Permissions.defaults
    private(set) var permissionsJSON: String = Permissions.defaults.jsonText

    init(values: [String: JSONValue]) {
        self.values = values
        refreshPermissions()
    }

    mutating func refreshPermissions() {
        permissions = Permissions.fill(values[Self.userPermissionsKey])
        permissionsJSON = permissions.jsonText
    }

    /// A user's permissions: the filled defaults, plus what their groups grant.
    func permissions(groupGrants: [JSONValue]) -> JSONValue {
        groupGrants.reduce(permissions) { Permissions.combine($0, with: $1) }
    }

    /// The same as JSON text: the cached text unless groups grant more.
    func permissionsJSON(groupGrants: [JSONValue]) -> String {
        groupGrants.isEmpty ? permissionsJSON : permissions(groupGrants: groupGrants).jsonText
    }

    /// Keys of the admin config object, in the real server's order.
    static let keys = [
        "ENABLE_MFA", "MFA_ALLOW_OAUTH_BYPASS", "MFA_ALLOW_TRUSTED_HEADER_BYPASS", "SHOW_ADMIN_DETAILS", "ADMIN_EMAIL",
        "WEBUI_URL", "ENABLE_LOGIN_FORM", "ENABLE_SIGNUP", "ENABLE_API_KEYS", "ENABLE_API_KEYS_ENDPOINT_RESTRICTIONS",
        "API_KEYS_ALLOWED_ENDPOINTS", "DEFAULT_USER_ROLE", "DEFAULT_GROUP_ID", "DEFAULT_INTERFACE_SETTINGS", "I18N",
        "JWT_EXPIRES_IN", "ENABLE_COMMUNITY_SHARING", "ENABLE_MESSAGE_RATING", "ENABLE_FOLDERS", "FOLDER_MAX_FILE_COUNT",
        "AUTOMATION_MAX_COUNT", "AUTOMATION_MIN_INTERVAL", "ENABLE_AUTOMATIONS", "ENABLE_CHANNELS",
        "ENABLE_ENCRYPTED_CHANNELS", "ENABLE_APPS", "CHANNEL_MODEL_RESPONSE_MODE", "ENABLE_CALENDAR", "ENABLE_MEMORIES",
        "ENABLE_MEMORY_SYSTEM_CONTEXT", "ENABLE_SKILL_LAZY_LOADING", "SKILL_CONTENT_MAX_CHARS", "SKILL_PREVIEW_MAX_CHARS",
        "ENABLE_NOTES", "ENABLE_USER_WEBHOOKS", "ENABLE_USER_STATUS", "PENDING_USER_OVERLAY_TITLE",
        "PENDING_USER_OVERLAY_CONTENT", "RESPONSE_WATERMARK",
    ]
    /// Required in a POST body (the real server answers 422 without them).
    static let required: Set<String> = [
        "SHOW_ADMIN_DETAILS", "WEBUI_URL", "ENABLE_SIGNUP", "ENABLE_API_KEYS", "ENABLE_API_KEYS_ENDPOINT_RESTRICTIONS",
        "API_KEYS_ALLOWED_ENDPOINTS", "DEFAULT_USER_ROLE", "DEFAULT_GROUP_ID", "JWT_EXPIRES_IN",
        "ENABLE_COMMUNITY_SHARING", "ENABLE_MESSAGE_RATING", "ENABLE_FOLDERS", "ENABLE_AUTOMATIONS", "ENABLE_CHANNELS",
        "ENABLE_CALENDAR", "ENABLE_MEMORIES", "ENABLE_MEMORY_SYSTEM_CONTEXT", "ENABLE_NOTES", "ENABLE_USER_WEBHOOKS",
        "ENABLE_USER_STATUS",
    ]
    /// Where the default user permissions live in the stored object (not part of the admin config reply).
    static let userPermissionsKey = "USER_PERMISSIONS"

    static func defaults(_ env: Shared.Environment) -> AdminConfig {
        func bool(_ name: String, _ value: Bool) -> JSONValue { .bool(env.bool(name, default: value)) }
        func text(_ name: String, _ value: String) -> JSONValue { .string(env.string(name, default: value)) }
        return AdminConfig(values: [
            "ENABLE_MFA": .bool(false), "MFA_ALLOW_OAUTH_BYPASS": .bool(false),
            "MFA_ALLOW_TRUSTED_HEADER_BYPASS": .bool(false),
            "SHOW_ADMIN_DETAILS": bool("SHOW_ADMIN_DETAILS", true),
            "ADMIN_EMAIL": JSONValue(env.string("ADMIN_EMAIL")),
            "WEBUI_URL": text("WEBUI_URL", ""),
            "ENABLE_LOGIN_FORM": bool("ENABLE_LOGIN_FORM", true),
            "ENABLE_SIGNUP": bool("ENABLE_SIGNUP", true),
            "ENABLE_API_KEYS": bool("ENABLE_API_KEYS", false),
            "ENABLE_API_KEYS_ENDPOINT_RESTRICTIONS": bool("ENABLE_API_KEYS_ENDPOINT_RESTRICTIONS", false),
            "API_KEYS_ALLOWED_ENDPOINTS": text("API_KEYS_ALLOWED_ENDPOINTS", ""),
            "DEFAULT_USER_ROLE": text("DEFAULT_USER_ROLE", "pending"),
            "DEFAULT_GROUP_ID": text("DEFAULT_GROUP_ID", ""),
            "DEFAULT_INTERFACE_SETTINGS": .object([:]), "I18N": .object([:]),
            "JWT_EXPIRES_IN": text("JWT_EXPIRES_IN", "4w"),
            "ENABLE_COMMUNITY_SHARING": bool("ENABLE_COMMUNITY_SHARING", true),
            "ENABLE_MESSAGE_RATING": bool("ENABLE_MESSAGE_RATING", true),
            "ENABLE_FOLDERS": bool("ENABLE_FOLDERS", true),
            "FOLDER_MAX_FILE_COUNT": .string(""), "AUTOMATION_MAX_COUNT": .string(""),
            "AUTOMATION_MIN_INTERVAL": .string(""),
            "ENABLE_AUTOMATIONS": bool("ENABLE_AUTOMATIONS", true),
            "ENABLE_CHANNELS": bool("ENABLE_CHANNELS", false),
            "ENABLE_ENCRYPTED_CHANNELS": .bool(false), "ENABLE_APPS": .bool(false),
            "CHANNEL_MODEL_RESPONSE_MODE": .string("thread"),
            "ENABLE_CALENDAR": bool("ENABLE_CALENDAR", true),
            "ENABLE_MEMORIES": bool("ENABLE_MEMORIES", true),
            "ENABLE_MEMORY_SYSTEM_CONTEXT": .bool(true), "ENABLE_SKILL_LAZY_LOADING": .bool(false),
            "SKILL_CONTENT_MAX_CHARS": .null, "SKILL_PREVIEW_MAX_CHARS": .null,
            "ENABLE_NOTES": bool("ENABLE_NOTES", true),
            "ENABLE_USER_WEBHOOKS": bool("ENABLE_USER_WEBHOOKS", false),
            "ENABLE_USER_STATUS": bool("ENABLE_USER_STATUS", true),
            "PENDING_USER_OVERLAY_TITLE": .string(""), "PENDING_USER_OVERLAY_CONTENT": .string(""),
            "RESPONSE_WATERMARK": .string(""),
            "WEBUI_BANNERS": env.string("WEBUI_BANNERS").flatMap(JSONValue.parse).flatMap { $0 == .null ? nil : $0 }
                ?? .array([]),
        ])
    }

    func bool(_ key: String) -> Bool { values[key]?.boolValue ?? false }
    func string(_ key: String) -> String { values[key]?.stringValue ?? "" }

    /// The object `GET /admin/config` returns.
    var adminObject: JSONValue {
        .object(Dictionary(uniqueKeysWithValues: Self.keys.map { ($0, values[$0] ?? .null) }))
    }

    /// Open sign-up needs both the sign-up switch and the login form.
    var signupAllowed: Bool { bool("ENABLE_SIGNUP") && bool("ENABLE_LOGIN_FORM") }

    /// Token lifetime in seconds; nil means tokens never expire.
    var tokenLifetime: Int? {
        (TokenLifetime.seconds(string("JWT_EXPIRES_IN")) ?? .some(2_419_200)) ?? nil
    }

    /// Validates a POST body and returns the values to store, following the real server's rules:
    /// required keys must be present with the right types; invalid roles, modes and durations are ignored.
    static func update(from body: JSONValue) throws -> [String: JSONValue] {
        guard case .object(let object) = body else { throw AuthInputError.invalid }
        let booleans: Set<String> = Set(keys.filter { $0.hasPrefix("ENABLE_") || $0.hasPrefix("MFA_") || $0 == "SHOW_ADMIN_DETAILS" })
        let strings: Set<String> = [
            "WEBUI_URL", "API_KEYS_ALLOWED_ENDPOINTS", "DEFAULT_USER_ROLE", "DEFAULT_GROUP_ID", "JWT_EXPIRES_IN",
            "CHANNEL_MODEL_RESPONSE_MODE",
        ]
        var result: [String: JSONValue] = [:]
        for key in required where object[key] == nil { throw AuthInputError.invalid }
        for key in keys {
            guard let value = object[key] else { continue }
            if booleans.contains(key) {
                guard let flag = laxBool(value) else { throw AuthInputError.invalid }
                result[key] = .bool(flag)
            } else if strings.contains(key) {
                guard case .string = value else { throw AuthInputError.invalid }
                result[key] = value
            } else {
                result[key] = value
            }
        }
        if let role = result["DEFAULT_USER_ROLE"]?.stringValue, !["pending", "user", "admin"].contains(role) {
            result["DEFAULT_USER_ROLE"] = nil
        }
        if let mode = result["CHANNEL_MODEL_RESPONSE_MODE"]?.stringValue, !["thread", "channel"].contains(mode) {
            result["CHANNEL_MODEL_RESPONSE_MODE"] = nil
        }
        if let expiry = result["JWT_EXPIRES_IN"]?.stringValue,
            expiry.range(of: #"^(-1|0|(-?\d+(\.\d+)?)(ms|s|m|h|d|w))$"#, options: .regularExpression) == nil
        {
            result["JWT_EXPIRES_IN"] = nil
        }
        return result
    }

    /// Pydantic's lax booleans.
    static func laxBool(_ value: JSONValue) -> Bool? {
        switch value {
        case .bool(let flag): return flag
        case .int(let number) where number == 0 || number == 1: return number == 1
        case .string(let text):
            switch text.lowercased() {
            case "true", "yes", "on", "t", "y", "1": return true
            case "false", "no", "off", "f", "n", "0": return false
            default: return nil
            }
        default: return nil
        }
    }
}

/// A body the auths routes refuse with "Invalid authentication request.".
enum AuthInputError: Error {
    case invalid
}
