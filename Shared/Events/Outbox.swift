// The transactional outbox: an event is written in the same transaction as the change it describes,
// and the relay moves it to the Redis stream afterwards. So no event is lost while Redis is down,
// and none is published for a change that rolled back.
import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle

/// Writes events into a service's `outbox` table inside the caller's transaction.
public struct Outbox: Sendable {
    /// The schema whose `outbox` table holds pending events.
    public let schema: String
    public let stream: String

    public init(schema: String, stream: String) {
        self.schema = schema
        self.stream = stream
    }

    /// The JSON an event is stored and relayed as.
    public static func payload(_ event: Event) throws -> String {
        String(decoding: try JSONEncoder.skiff.encode(event), as: UTF8.self)
    }

    public func enqueue(_ event: Event, on connection: PostgresConnection, logger: Logger) async throws {
        let payload = try Self.payload(event)
        try await connection.query(
            "INSERT INTO \(unescaped: schema).outbox (stream, payload) VALUES (\(stream), \(payload)::jsonb)",
            logger: logger)
    }

    /// Several events in one statement, in order (a bulk delete would otherwise cost a round trip per event).
    public func enqueue(_ events: [Event], on connection: PostgresConnection, logger: Logger) async throws {
        guard !events.isEmpty else { return }
        let payloads = try events.map(Self.payload)
        try await connection.query(
            """
            INSERT INTO \(unescaped: schema).outbox (stream, payload)
            SELECT \(stream), e.payload::jsonb FROM unnest(\(payloads)::text[]) WITH ORDINALITY AS e(payload, n)
            ORDER BY e.n
            """, logger: logger)
    }
}

/// Moves outbox rows to their Redis stream and deletes them once Redis has them (at least once).
public struct OutboxRelay: Service {
    let outbox: Outbox
    let postgres: PostgresClient
    let redis: RedisClient
    let logger: Logger
    let interval: Duration
    let batchLimit: Duration

    public init(
        outbox: Outbox, postgres: PostgresClient, redis: RedisClient, logger: Logger, interval: Duration = .milliseconds(100),
        batchLimit: Duration = .seconds(10)
    ) {
        self.outbox = outbox
        self.postgres = postgres
        self.redis = redis
        self.logger = logger
        self.interval = interval
        self.batchLimit = batchLimit
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                // A batch that outlives the limit is given up on and tried again: a transaction whose connection
                // Postgres closed mid-way (a restart) can otherwise wait forever, and the relay with it. Its rows
                // stay in the outbox (the transaction never committed), so nothing is lost; at worst an event
                // goes out twice, which at-least-once delivery allows.
                while try await withDeadline(batchLimit, { try await relayBatch() }) == 100 {}
            } catch {
                logger.debug("outbox relay waiting", metadata: ["error": "\(String(reflecting: error))"])
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// Publishes up to 100 pending events; returns how many were sent.
    @discardableResult
    public func relayBatch() async throws -> Int {
        let schema = outbox.schema
        let redis = self.redis
        let logger = self.logger
        return try await postgres.withTransaction(logger: logger) { connection in
            let rows = try await connection.query(
                "SELECT id, stream, payload::text FROM \(unescaped: schema).outbox ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED",
                logger: logger)
            var sent: [Int64] = []
            for try await (id, stream, payload) in rows.decode((Int64, String, String).self) {
                try await redis.send([
                    "XADD", stream, "MAXLEN", "~", String(EventStream.maxLength), "*", "event", payload,
                ])
                sent.append(id)
            }
            if !sent.isEmpty {
                try await connection.query(
                    "DELETE FROM \(unescaped: schema).outbox WHERE id = ANY(\(sent))", logger: logger)
            }
            return sent.count
        }
    }
}
