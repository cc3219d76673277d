// /api/v1/configs/banners: the notices the web app shows above chats; any signed-in user reads them, admins
// replace them.
import Foundation
import Hummingbird
import Shared

struct ConfigsController {
    let accounts: Accounts
    static let key = "WEBUI_BANNERS"

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("banners", use: banners)
        routes.post("banners", use: updateBanners)
        return routes
    }

    /// A `BannerModel`: `i18n`, `id`, `type`, `title`, `content`, `dismissible`, `timestamp`, in that order.
    struct Banner: Decodable {
        var i18n: [String: [String: String]]?
        var id: String
        var type: String
        var title: String?
        var content: String
        var dismissible: Bool
        var timestamp: Int

        var json: JSONValue {
            .object([
                "i18n": i18n.map { .object($0.mapValues { .object($0.mapValues(JSONValue.string)) }) } ?? .null,
                "id": .string(id), "type": .string(type), "title": JSONValue(title), "content": .string(content),
                "dismissible": .bool(dismissible), "timestamp": .int(timestamp),
            ])
        }

        static func text(_ value: JSONValue) -> String {
            OrderedJSON.object(
                ["i18n", "id", "type", "title", "content", "dismissible", "timestamp"].map { ($0, value[$0] ?? .null) })
        }
    }

    struct BannersForm: Decodable {
        var banners: [Banner]
    }

    @Sendable func banners(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireVerified()
        guard case .array(let items)? = try await accounts.config.current().values[Self.key] else {
            return JSONResponse.text("[]")
        }
        return JSONResponse.text(OrderedJSON.array(items.filter { $0.objectValue != nil }.map(Banner.text)))
    }

    /// Replaces the banners; answers them as saved.
    @Sendable func updateBanners(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let form = try await JSONBody.decode(BannersForm.self, from: request)
        let banners = form.banners.map(\.json)
        try await accounts.saveConfig([Self.key: .array(banners)], actor: admin.userID)
        return JSONResponse.text(OrderedJSON.array(banners.map(Banner.text)))
    }
}
