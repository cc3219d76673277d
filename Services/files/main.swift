// The files service. This issue starts it with its health routes and its migrations; later issues fill it.
import Foundation
import Shared

let config = ServiceConfig(defaultPort: 8083)
let runtime = try ServiceRuntime(name: "files", config: config)
let router = runtime.makeRouter()
let app = runtime.makeApplication(
    router: router, schema: "files",
    migrations: Bundle.module.url(forResource: "Migrations", withExtension: nil)!)
try await app.runService()
