// The chat service. It starts with its health routes and its migrations; later issues fill it.
import Foundation
import Shared

try await ServiceRuntime.runSkeleton(
    name: "chat", defaultPort: 8082, migrations: Bundle.module.url(forResource: "Migrations", withExtension: nil)!)
