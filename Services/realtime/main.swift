// The realtime service: Socket.IO (Engine.IO 4, websocket and long-polling) at /ws/socket.io. Every replica
// delivers what services publish on Redis to the sockets it holds.
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Shared

let runtime = try ServiceRuntime(name: "realtime", config: ServiceConfig(defaultPort: 8085))
let env = runtime.config.environment
let settings = EngineSettings(environment: env)
/// `SKIFF_REALTIME_REPLICA_ID`: this replica's tag (4 letters or digits), the first characters of its session ids.
let replicaID = String(env.string("SKIFF_REALTIME_REPLICA_ID", default: SessionID.make(tag: "", length: 4)).prefix(4))
/// `SKIFF_REALTIME_ADVERTISE_URL`: where gateways reach this replica.
let advertisedURL = env.string(
    "SKIFF_REALTIME_ADVERTISE_URL",
    default: "http://\(runtime.config.host == "0.0.0.0" ? "127.0.0.1" : runtime.config.host):\(runtime.config.port)")
let httpClient = HTTPClient(eventLoopGroupProvider: .singleton)
let internalSecret = runtime.config.internalSecret
let connections = Connections(
    settings: settings, replicaID: replicaID,
    verifier: TokenVerifier(
        tokens: SessionTokens(secret: runtime.config.secretKey), redis: runtime.redis,
        auth: AuthLookup(
            client: httpClient, baseURL: env.string("SKIFF_AUTH_URL", default: "http://127.0.0.1:8081"),
            internalSecret: internalSecret)),
    chats: ChatAccess(
        client: httpClient, chatURL: env.string("SKIFF_CHAT_URL", default: "http://127.0.0.1:8082"),
        internalSecret: internalSecret),
    presence: Presence(redis: runtime.redis, replicaID: replicaID),
    bus: RealtimeBus(redis: runtime.redis, logger: runtime.logger), logger: runtime.logger)

let router = runtime.makeRouter()
let polling = PollingTransport(connections: connections, settings: settings)
// (Hummingbird matches the path with and without its trailing slash.)
router.get("/ws/socket.io", use: polling.handle)
router.post("/ws/socket.io", use: polling.handle)
router.on("/ws/socket.io", method: .options) { _, _ in PollingTransport.text("OK") }

let subscriber = try RedisSubscriber(
    address: RedisAddress(url: runtime.config.redisURL), channels: [RealtimeBus.channel], logger: runtime.logger
) { message in
    if message.payload.hasPrefix(RealtimeBus.controlPrefix) {
        guard let control = JSONValue.parse(String(message.payload.dropFirst(RealtimeBus.controlPrefix.count))) else {
            return
        }
        Task { await connections.control(control) }
        return
    }
    connections.hub.deliver(busMessage: message.payload)
}

let app = runtime.makeApplication(
    router: router, schema: "realtime",
    migrations: Bundle.module.url(forResource: "Migrations", withExtension: nil)!,
    services: [
        subscriber, PingService(connections: connections),
        ReplicaRegistration(redis: runtime.redis, replicaID: replicaID, url: advertisedURL, logger: runtime.logger),
    ],
    server: UpgradableHTTPChannel.builder(
        refusal: .init(contentType: "text/plain; charset=UTF-8", body: JSONValue.string("Bad Request").jsonText)
    ) { _ in
        [WebSocketTransport.upgrader(connections: connections, settings: settings, internalSecret: internalSecret)]
    })
try await app.runUntilStopped()
try await httpClient.shutdown().get()
