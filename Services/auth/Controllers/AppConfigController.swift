// GET /api/config: what the web app reads before and after sign-in (`onboarding` until the first user exists).
import Foundation
import Hummingbird
import Shared

struct AppConfigController {
    let accounts: Accounts
    /// The signed-in shape of the real server, with our values filled in per request.
    let template: JSONValue

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: appConfig)
        return routes
    }

    @Sendable func appConfig(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let config = try await accounts.config.current()
        let settings = accounts.settings
        let features: [String: JSONValue] = [
            "slim": .bool(false), "auth": .bool(true), "auth_trusted_header": .bool(false),
            "enable_signup_password_confirmation": .bool(false), "enable_ldap": .bool(false),
            "enable_signup": .bool(config.bool("ENABLE_SIGNUP")), "enable_login_form": .bool(config.bool("ENABLE_LOGIN_FORM")),
            "enable_websocket": .bool(true),
        ]
        let base: [String: JSONValue] = [
            "status": .bool(true), "name": .string(settings.webuiName), "version": .string(SkiffVersion.openWebUI),
            "default_locale": .string(settings.defaultLocale), "i18n": config.values["I18N"] ?? .object([:]),
            "oauth": .object(["providers": .object([:]), "auto_redirect": .bool(false)]),
        ]
        // Signed-in callers (pending ones too) get the authenticated feature flags as well.
        let signedInFeatures = features.merging([
            "enable_api_keys": .bool(config.bool("ENABLE_API_KEYS")),
            "enable_folders": .bool(config.bool("ENABLE_FOLDERS")),
            "enable_channels": .bool(config.bool("ENABLE_CHANNELS")),
            "enable_calendar": .bool(config.bool("ENABLE_CALENDAR")),
            "enable_automations": .bool(config.bool("ENABLE_AUTOMATIONS")),
            "enable_notes": .bool(config.bool("ENABLE_NOTES")),
            "enable_community_sharing": .bool(config.bool("ENABLE_COMMUNITY_SHARING")),
            "enable_message_rating": .bool(config.bool("ENABLE_MESSAGE_RATING")),
            "enable_user_webhooks": .bool(config.bool("ENABLE_USER_WEBHOOKS")),
            "enable_user_status": .bool(config.bool("ENABLE_USER_STATUS")),
            "enable_memories": .bool(config.bool("ENABLE_MEMORIES")),
        ]) { _, new in new }
        let overlay: [String: JSONValue] = [
            "pending_user_overlay_title": config.values["PENDING_USER_OVERLAY_TITLE"] ?? .string(""),
            "pending_user_overlay_content": config.values["PENDING_USER_OVERLAY_CONTENT"] ?? .string(""),
        ]
        guard let identity = context.identity else {
            var reply = base
            reply["features"] = .object(features)
            if try await !accounts.users.hasUsers() { reply["onboarding"] = .bool(true) }
            return try JSONResponse.make(JSONValue.object(reply))
        }
        guard identity.isVerified else {
            // A pending user: every feature flag and the waiting screen's texts, nothing else (as the original).
            var reply = base
            reply["features"] = (template["features"] ?? .object([:])).merging(.object(signedInFeatures))
            reply["ui"] = .object(overlay)
            return try JSONResponse.make(JSONValue.object(reply))
        }
        let full = template.merging(.object(base)).merging(
            .object([
                "features": .object(signedInFeatures),
                "permissions": config.permissions,
                "ui": .object(
                    overlay.merging([
                        "default_interface_settings": config.values["DEFAULT_INTERFACE_SETTINGS"] ?? .object([:]),
                        "response_watermark": config.values["RESPONSE_WATERMARK"] ?? .string(""),
                    ]) { _, new in new }),
            ]))
        return try JSONResponse.make(full)
    }
}
