// The gateway: the one public endpoint. It resolves callers, enforces limits and forwards to the services.
import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOPosix
import Shared

NIOExecutor.configure()

let config = GatewayConfig()
let logger = config.service.logger("gateway")
let redis = try RedisClient(url: config.service.redisURL)
let streamRedis = try RedisClient(url: config.service.redisURL)

var clientConfiguration = HTTPClient.Configuration()
clientConfiguration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
clientConfiguration.timeout = .init(connect: .seconds(2))
clientConfiguration.decompression = .disabled
// A service's redirect (a model's picture, say) goes to the client as it is, never followed here.
clientConfiguration.redirectConfiguration = .disallow
// No tracer: otherwise every forwarded request builds a (no-op) span and parses its URL a second time.
clientConfiguration.tracing.tracer = nil
let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)

let cache = PrincipalCache()
let webApp = WebApp()
if !webApp.available {
    logger.notice("no web app build: set FRONTEND_BUILD_DIR (./scripts/run unpacks Open WebUI's)", metadata: ["dir": "\(webApp.buildDirectory)"])
}
let activity = ActivityLog(redis: redis, logger: logger)
let realtimeRoutes = RealtimeRoutes(redis: redis, fallback: config.upstreams[.realtime]!)
let authLookup = AuthLookup(client: httpClient, baseURL: config.upstreams[.auth]!, internalSecret: config.service.internalSecret)
let responder = GatewayResponder(
    config: config,
    authenticator: Authenticator(
        tokens: SessionTokens(secret: config.service.secretKey), redis: redis, cache: cache, auth: authLookup),
    limiter: RateLimiter(redis: redis),
    proxy: ServiceProxy(
        client: httpClient, upstreams: config.upstreams, internalSecret: config.service.internalSecret,
        maxBodySize: config.maxBodySize, headTimeout: .seconds(config.upstreamTimeout),
        longHeadTimeout: .seconds(config.longUpstreamTimeout)),
    cors: CORSPolicy(allowedOrigins: config.corsAllowOrigins),
    openAPI: OpenAPIDocument(client: httpClient, upstreams: config.upstreams, internalSecret: config.service.internalSecret),
    cache: cache, realtime: realtimeRoutes, activity: activity, webApp: webApp,
    changelog: Changelog.json(at: webApp.buildDirectory + "/../CHANGELOG.md"), logger: logger)

let follower = StreamFollower(redis: streamRedis, stream: EventStream.auth, logger: logger) { event in
    cache.apply(event: event)
}

var app = Application(
    responder: responder,
    // Socket.IO websocket upgrades are spliced through to the realtime replicas.
    server: UpgradableHTTPChannel.builder(
        refusal: .init(contentType: "application/json", body: #"{"detail":"This path does not take a websocket upgrade."}"#)
    ) { _ in
        [RealtimeSplice(realtime: realtimeRoutes, internalSecret: config.service.internalSecret, logger: logger)]
    },
    configuration: .init(address: .hostname(config.service.host, port: config.service.port), serverName: "skiff-gateway"),
    logger: logger)
app.addServices(follower, activity)
try await app.runUntilStopped()
try await httpClient.shutdown().get()
