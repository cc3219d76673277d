// The chat service. This issue starts it with its health routes and its migrations; later issues fill it.
import Foundation
import Shared

let config = ServiceConfig(defaultPort: 8082)
let runtime = try ServiceRuntime(name: "chat", config: config)
let router = runtime.makeRouter()
let app = runtime.makeApplication(
    router: router, schema: "chat",
    migrations: Bundle.module.url(forResource: "Migrations", withExtension: nil)!)
try await app.runService()
