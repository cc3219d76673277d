// /openapi.json and /docs: built from the routes each service reports, so they describe what exists.
import AsyncHTTPClient
import Foundation
import Shared

struct OpenAPIDocument: Sendable {
    let client: HTTPClient
    let upstreams: [Upstream: String]
    let internalSecret: String

    /// Routes the gateway itself serves.
    static let gatewayRoutes: [(String, String)] = [
        ("GET", "/health"), ("GET", "/health/db"), ("GET", "/api/version"), ("GET", "/openapi.json"), ("GET", "/docs"),
    ]

    /// FastAPI writes a router's root route with a trailing slash (`/api/v1/auths/`).
    static func isRouterRoot(_ path: String) -> Bool {
        let parts = path.split(separator: "/")
        return parts.count == 3 && parts[0] == "api" && parts[1] == "v1"
    }

    func build() async -> JSONValue {
        var paths: [String: [String: JSONValue]] = [:]
        func add(_ method: String, _ path: String, tag: String) {
            let openAPIPath = "/" + path.split(separator: "/").map { part in
                part.hasPrefix(":") ? "{\(part.dropFirst())}" : String(part)
            }.joined(separator: "/") + (Self.isRouterRoot(path) ? "/" : "")
            let parameters = openAPIPath.split(separator: "/").filter { $0.hasPrefix("{") }.map { part -> JSONValue in
                .object([
                    "name": .string(String(part.dropFirst().dropLast())), "in": .string("path"), "required": .bool(true),
                    "schema": .object(["type": .string("string")]),
                ])
            }
            var operation: [String: JSONValue] = [
                "tags": .array([.string(tag)]), "summary": .string("\(method) \(openAPIPath)"),
                "responses": .object(["200": .object(["description": .string("Successful Response")])]),
            ]
            if !parameters.isEmpty { operation["parameters"] = .array(parameters) }
            paths[openAPIPath, default: [:]][method.lowercased()] = .object(operation)
        }
        for (method, path) in Self.gatewayRoutes { add(method, path, tag: "gateway") }
        await withTaskGroup(of: (Upstream, [[String: String]]).self) { group in
            for upstream in Upstream.allCases {
                group.addTask { (upstream, await routes(of: upstream)) }
            }
            for await (upstream, routes) in group {
                for route in routes {
                    guard let method = route["method"], let path = route["path"], !path.hasPrefix("/internal"),
                        !path.hasPrefix("/health")
                    else { continue }
                    add(method, path, tag: upstream.rawValue)
                }
            }
        }
        return .object([
            "openapi": .string("3.1.0"),
            "info": .object(["title": .string("Skiff (Open WebUI API)"), "version": .string(SkiffVersion.openWebUI)]),
            "paths": .object(paths.mapValues { .object($0) }),
            "components": .object([
                "securitySchemes": .object([
                    "HTTPBearer": .object(["type": .string("http"), "scheme": .string("bearer")])
                ])
            ]),
        ])
    }

    private func routes(of upstream: Upstream) async -> [[String: String]] {
        var request = HTTPClientRequest(url: upstreams[upstream]! + "/internal/routes")
        request.headers.add(name: InternalHeader.secret.rawName, value: internalSecret)
        guard let response = try? await client.execute(request, timeout: .seconds(3)), response.status.code == 200,
            let body = try? await response.body.collect(upTo: 4 << 20)
        else { return [] }
        return (try? JSONDecoder().decode([[String: String]].self, from: Data(buffer: body))) ?? []
    }

    static let docsPage = """
        <!doctype html>
        <html><head><title>Skiff - API docs</title>
        <link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
        <body><div id="swagger-ui"></div>
        <script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
        <script>SwaggerUIBundle({url: '/openapi.json', dom_id: '#swagger-ui'});</script>
        </body></html>
        """
}
