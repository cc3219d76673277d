// The files service. It starts with its health routes and its migrations; later issues fill it.
import Foundation
import Shared

try await ServiceRuntime.runSkeleton(
    name: "files", defaultPort: 8083, migrations: Bundle.module.url(forResource: "Migrations", withExtension: nil)!)
