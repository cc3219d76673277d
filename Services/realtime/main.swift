// The realtime service. It starts with its health routes and its migrations; later issues fill it.
import Foundation
import Shared

try await ServiceRuntime.runSkeleton(
    name: "realtime", defaultPort: 8085, migrations: Bundle.module.url(forResource: "Migrations", withExtension: nil)!)
