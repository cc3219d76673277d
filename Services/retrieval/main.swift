// The retrieval service. This issue starts it with its health routes and its migrations; later issues fill it.
import Foundation
import Shared

let config = ServiceConfig(defaultPort: 8084)
let runtime = try ServiceRuntime(name: "retrieval", config: config)
let router = runtime.makeRouter()
let app = runtime.makeApplication(
    router: router, schema: "retrieval",
    migrations: Bundle.module.url(forResource: "Migrations", withExtension: nil)!)
try await app.runService()
