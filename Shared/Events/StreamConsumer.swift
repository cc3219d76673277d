// Reads a stream in a consumer group: each event is handled by one replica, acknowledged after it is
// handled, and reclaimed from a consumer that died before acknowledging.
import Foundation
import Logging
import ServiceLifecycle

/// A consumer-group reader of one event stream.
public struct StreamConsumer: Service {
    let redis: RedisClient
    let stream: String
    let group: String
    let consumer: String
    let logger: Logger
    /// Entries pending longer than this on any consumer are taken over.
    let reclaimAfter: Duration
    /// How many events of one read are handled at once; events with the same `key` are handled in order.
    let concurrency: Int
    let key: (@Sendable (Event) -> String?)?
    let handler: @Sendable (Event) async throws -> Void

    /// `redis` should be a client of its own: blocking reads hold its connection.
    public init(
        redis: RedisClient, stream: String, group: String, consumer: String = StreamConsumer.uniqueName(),
        logger: Logger, reclaimAfter: Duration = .seconds(30), concurrency: Int = 1,
        key: (@Sendable (Event) -> String?)? = nil, handler: @escaping @Sendable (Event) async throws -> Void
    ) {
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.logger = logger
        self.reclaimAfter = reclaimAfter
        self.concurrency = max(1, concurrency)
        self.key = key
        self.handler = handler
    }

    public static func uniqueName() -> String {
        "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))"
    }

    public func run() async throws {
        var groupReady = false
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                if !groupReady {
                    try await ensureGroup()
                    groupReady = true
                }
                try await pollOnce(block: 1000)
            } catch {
                groupReady = false
                logger.debug("stream consumer waiting", metadata: ["stream": "\(stream)", "error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// Creates the group (and the stream) if missing; reading starts at the stream's beginning.
    public func ensureGroup() async throws {
        do {
            try await redis.send(["XGROUP", "CREATE", stream, group, "0", "MKSTREAM"])
        } catch let error as RedisError where error.message.hasPrefix("BUSYGROUP") {}
    }

    /// Reclaims entries left idle by dead consumers, then reads new ones; handles and acknowledges both.
    public func pollOnce(block milliseconds: Int) async throws {
        let idle = reclaimAfter.components.seconds * 1000 + reclaimAfter.components.attoseconds / 1_000_000_000_000_000
        let claimed = try await redis.send([
            "XAUTOCLAIM", stream, group, consumer, String(idle), "0-0", "COUNT", "50",
        ])
        if let entries = claimed.array?.dropFirst().first?.array {
            try await handle(entries)
        }
        let reply = try await redis.send(
            ["XREADGROUP", "GROUP", group, consumer, "COUNT", "50", "BLOCK", String(milliseconds), "STREAMS", stream, ">"],
            timeout: .milliseconds(Int64(milliseconds) + 5000))
        for streamReply in reply.array ?? [] {
            if let entries = streamReply.array?.last?.array { try await handle(entries) }
        }
    }

    private func handle(_ entries: [RESPValue]) async throws {
        guard concurrency > 1 else { return try await handleInOrder(entries) }
        // Entries with the same key stay in order in one lane; lanes run side by side, `concurrency` at a time.
        var lanes: [[RESPValue]] = []
        var laneOfKey: [String: Int] = [:]
        for entry in entries {
            let payload = entry.array?.last?.array.flatMap { fields -> String? in
                stride(from: 0, to: fields.count - 1, by: 2).first { fields[$0].string == "event" }.flatMap { fields[$0 + 1].string }
            }
            let event = payload.flatMap { try? JSONDecoder().decode(Event.self, from: Data($0.utf8)) }
            if let event, let name = key?(event) {
                if let lane = laneOfKey[name] {
                    lanes[lane].append(entry)
                    continue
                }
                laneOfKey[name] = lanes.count
            }
            lanes.append([entry])
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            var running = 0
            for lane in lanes {
                if running == concurrency {
                    try await group.next()
                    running -= 1
                }
                group.addTask { try await self.handleInOrder(lane) }
                running += 1
            }
            try await group.waitForAll()
        }
    }

    private func handleInOrder(_ entries: [RESPValue]) async throws {
        for entry in entries {
            guard let parts = entry.array, parts.count == 2, let entryID = parts[0].string else { continue }
            let fields = parts[1].array ?? []
            var payload: String?
            var index = 0
            while index + 1 < fields.count {
                if fields[index].string == "event" { payload = fields[index + 1].string }
                index += 2
            }
            guard let payload, let event = try? JSONDecoder().decode(Event.self, from: Data(payload.utf8)) else {
                logger.warning("dropping malformed stream entry", metadata: ["stream": "\(stream)", "id": "\(entryID)"])
                try await redis.send(["XACK", stream, group, entryID])
                continue
            }
            do {
                try await handler(event)
                try await redis.send(["XACK", stream, group, entryID])
            } catch {
                logger.warning(
                    "event handler failed; entry stays pending",
                    metadata: ["type": "\(event.type)", "id": "\(entryID)", "error": "\(error)"])
            }
        }
    }
}

/// Follows a stream without a group, so every replica sees every event (cache invalidation, config).
public struct StreamFollower: Service {
    let redis: RedisClient
    let stream: String
    let logger: Logger
    let handler: @Sendable (Event) async -> Void

    public init(redis: RedisClient, stream: String, logger: Logger, handler: @escaping @Sendable (Event) async -> Void) {
        self.redis = redis
        self.stream = stream
        self.logger = logger
        self.handler = handler
    }

    public func run() async throws {
        var lastID: String?
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                if lastID == nil {
                    let newest = try await redis.send(["XREVRANGE", stream, "+", "-", "COUNT", "1"])
                    lastID = newest.array?.first?.array?.first?.string ?? "0-0"
                }
                let reply = try await redis.send(
                    ["XREAD", "COUNT", "100", "BLOCK", "1000", "STREAMS", stream, lastID ?? "0-0"], timeout: .seconds(6))
                for streamReply in reply.array ?? [] {
                    for entry in streamReply.array?.last?.array ?? [] {
                        guard let parts = entry.array, parts.count == 2, let id = parts[0].string else { continue }
                        lastID = id
                        let fields = parts[1].array ?? []
                        if fields.count >= 2, let payload = fields[1].string,
                            let event = try? JSONDecoder().decode(Event.self, from: Data(payload.utf8))
                        {
                            await handler(event)
                        }
                    }
                }
            } catch {
                logger.debug("stream follower waiting", metadata: ["stream": "\(stream)", "error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }
}
