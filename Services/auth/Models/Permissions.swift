// User permissions: Open WebUI's defaults, filled and combined with group grants as the real server does.
import Foundation
import Shared

enum Permissions {
    /// The real server's DEFAULT_USER_PERMISSIONS (a wire contract: these keys and values).
    static let defaults: JSONValue = JSONValue.parse(
        """
        {"workspace":{"models":false,"knowledge":false,"prompts":false,"tools":false,"skills":false,
        "models_import":false,"models_export":false,"models_hidden":false,"prompts_import":false,
        "prompts_export":false,"tools_import":false,"tools_export":false,"skills_import":false,"skills_export":false},
        "sharing":{"models":false,"public_models":false,"knowledge":false,"public_knowledge":false,"prompts":false,
        "public_prompts":false,"tools":false,"public_tools":false,"skills":false,"public_skills":false,"notes":false,
        "public_notes":false,"folders":false,"public_chats":false,"open_chats":false,"public_calendars":false},
        "access_grants":{"allow_users":true,"allow_groups":true},
        "chat":{"controls":true,"valves":true,"system_prompt":true,"params":true,"file_upload":true,"web_upload":true,
        "delete":true,"delete_message":true,"continue_response":true,"regenerate_response":true,"rate_response":true,
        "edit":true,"share":true,"export":true,"import":true,"stt":true,"tts":true,"call":true,"multiple_models":true,
        "temporary":true,"temporary_enforced":false},
        "features":{"api_keys":false,"notes":true,"folders":true,"channels":true,"encrypted_channels":false,
        "direct_tool_servers":false,"web_search":true,"image_generation":true,"code_interpreter":true,"memories":true,
        "automations":false,"calendar":true,"webhooks":false},
        "settings":{"interface":true}}
        """)!

    /// Adds keys missing from `configured` with their default values; configured values stay.
    static func fill(_ configured: JSONValue?) -> JSONValue {
        fillMissing(configured ?? .object([:]), from: defaults)
    }

    private static func fillMissing(_ value: JSONValue, from template: JSONValue) -> JSONValue {
        guard case .object(var object) = value, case .object(let base) = template else { return value }
        for (key, defaultValue) in base {
            if let existing = object[key] {
                object[key] = fillMissing(existing, from: defaultValue)
            } else {
                object[key] = defaultValue
            }
        }
        return .object(object)
    }

    /// Groups only grant: a leaf becomes true when the group grants it (most permissive wins).
    static func combine(_ base: JSONValue, with grant: JSONValue) -> JSONValue {
        guard case .object(var object) = base, case .object(let extra) = grant else { return base }
        for (key, value) in extra {
            if case .object = value {
                object[key] = combine(object[key] ?? .object([:]), with: value)
            } else if let current = object[key] {
                object[key] = current.isTruthy ? current : value
            } else {
                object[key] = value
            }
        }
        return .object(object)
    }
}
