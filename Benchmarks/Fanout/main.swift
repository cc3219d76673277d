// Realtime fan-out benchmark: N Socket.IO clients on websocket through the gateway (spread over the realtime
// replicas by its round robin), each signed in as its own user; every user gets one event per second, published
// on the Redis bus as any service publishes it. Reports delivery latency (publish to receipt) and the memory
// the processes named in FANOUT_PIDS hold per connection.
//
// Settings (environment): FANOUT_BASE_URL (http://127.0.0.1:8080), REDIS_URL (the replicas' Redis),
// FANOUT_CLIENTS (5000), FANOUT_DURATION seconds of publishing (30), FANOUT_IDLE seconds to wait before
// measuring idle memory (10), FANOUT_USERS_FILE (where the users' "id token" lines are kept between runs),
// FANOUT_PIDS ("name:pid,name:pid": processes whose VmRSS is reported), BENCH_EMAIL / BENCH_PASSWORD (the
// admin that adds the users, as in prepare.py).
import AsyncHTTPClient
import Foundation
import HummingbirdWSClient
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Shared

let env = ProcessInfo.processInfo.environment
let baseURL = env["FANOUT_BASE_URL"] ?? "http://127.0.0.1:8080"
let clientCount = Int(env["FANOUT_CLIENTS"] ?? "") ?? 5000
let duration = Int(env["FANOUT_DURATION"] ?? "") ?? 30
let idleWait = Int(env["FANOUT_IDLE"] ?? "") ?? 10
let usersFile = env["FANOUT_USERS_FILE"] ?? ".data/bench/fanout-users.txt"
let watched: [(String, Int)] = (env["FANOUT_PIDS"] ?? "").split(separator: ",").compactMap { item in
    let parts = item.split(separator: ":")
    guard parts.count == 2, let pid = Int(parts[1]) else { return nil }
    return (String(parts[0]), pid)
}
var logger = Logger(label: "fanout")
logger.logLevel = .warning

func say(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

func rssKB(_ pid: Int) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }
    return 0
}

func memory() -> [String: Int] {
    Dictionary(uniqueKeysWithValues: watched.map { ($0.0, rssKB($0.1)) })
}

// MARK: users

struct BenchUser: Sendable {
    let id: String
    let token: String
}

let http = HTTPClient(eventLoopGroupProvider: .singleton)

func post(_ path: String, _ body: JSONValue, token: String? = nil) async throws -> JSONValue {
    var request = HTTPClientRequest(url: baseURL + path)
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/json")
    if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
    request.body = .bytes(ByteBuffer(string: body.jsonText))
    let response = try await http.execute(request, timeout: .seconds(30))
    let bytes = try await response.body.collect(upTo: 1 << 20)
    guard response.status == .ok else {
        throw NSError(domain: "fanout", code: Int(response.status.code), userInfo: [
            NSLocalizedDescriptionKey: "\(path): \(response.status.code) \(String(buffer: bytes))"
        ])
    }
    return try JSONDecoder().decode(JSONValue.self, from: Data(buffer: bytes))
}

/// The users of earlier runs (their tokens still valid) plus new sign-ups up to `count`.
func loadUsers(_ count: Int) async throws -> [BenchUser] {
    var users: [BenchUser] = []
    if let text = try? String(contentsOfFile: usersFile, encoding: .utf8) {
        users = text.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ")
            return parts.count == 2 ? BenchUser(id: String(parts[0]), token: String(parts[1])) : nil
        }
    }
    if let first = users.first {
        var request = HTTPClientRequest(url: baseURL + "/api/v1/auths/")
        request.headers.add(name: "Authorization", value: "Bearer \(first.token)")
        if let response = try? await http.execute(request, timeout: .seconds(10)), response.status != .ok {
            users = []  // another server or secret: start over
        }
    }
    guard users.count < count else { return Array(users.prefix(count)) }
    // The benchmark admin of Benchmarks/prepare.py (signed up when the system is empty) adds the users.
    let email = env["BENCH_EMAIL"] ?? "bench-admin@example.com"
    let password = env["BENCH_PASSWORD"] ?? "skiff-bench-admin"
    let admin: String
    do {
        admin = try await post("/api/v1/auths/signin", .object(["email": .string(email), "password": .string(password)]))["token"]?
            .stringValue ?? ""
    } catch {
        admin = try await post(
            "/api/v1/auths/signup",
            .object(["name": .string("Bench Admin"), "email": .string(email), "password": .string(password)]))["token"]?
            .stringValue ?? ""
    }
    say("adding \(count - users.count) users ...")
    let run = UInt64.random(in: 0..<UInt64.max)
    let start = users.count
    let made = try await withThrowingTaskGroup(of: BenchUser.self) { group in
        var made: [BenchUser] = []
        var next = start
        func add() {
            let index = next
            next += 1
            group.addTask {
                let answer = try await post(
                    "/api/v1/auths/add",
                    .object([
                        "name": .string("Fan \(index)"), "email": .string("fan\(index)-\(run)@bench.skiff"),
                        "password": .string("bench-password-\(run)"), "role": .string("user"),
                    ]), token: admin)
                guard let id = answer["id"]?.stringValue, let token = answer["token"]?.stringValue else {
                    throw NSError(domain: "fanout", code: 1)
                }
                return BenchUser(id: id, token: token)
            }
        }
        for _ in 0..<min(16, count - start) { add() }
        while let user = try await group.next() {
            made.append(user)
            if next < count { add() }
        }
        return made
    }
    users += made
    try FileManager.default.createDirectory(
        atPath: (usersFile as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try users.map { "\($0.id) \($0.token)" }.joined(separator: "\n").write(toFile: usersFile, atomically: true, encoding: .utf8)
    return users
}

// MARK: clients

/// Latencies in microseconds, and counts of the clients' states.
final class Stats: Sendable {
    private let state = NIOLockedValueBox<(latencies: [Int], connected: Int, failed: Int, closed: Int)>(([], 0, 0, 0))
    func record(_ micros: Int) { state.withLockedValue { $0.latencies.append(micros) } }
    func connected() { state.withLockedValue { $0.connected += 1 } }
    func failed() { state.withLockedValue { $0.failed += 1 } }
    func closed() { state.withLockedValue { $0.closed += 1 } }
    var counts: (connected: Int, failed: Int, closed: Int) { state.withLockedValue { ($0.connected, $0.failed, $0.closed) } }
    func takeLatencies() -> [Int] { state.withLockedValue { $0.latencies } }
}

let stats = Stats()
let stop = NIOLockedValueBox(false)
let clock = ContinuousClock()
let origin = clock.now

func nowMicros() -> Int {
    let elapsed = clock.now - origin
    return Int(elapsed.components.seconds) * 1_000_000 + Int(elapsed.components.attoseconds / 1_000_000_000_000)
}

/// The publish time a bench event carries: `"t":<micros>`.
func sentMicros(_ text: String) -> Int? {
    guard let range = text.range(of: "\"t\":") else { return nil }
    return Int(text[range.upperBound...].prefix { $0.isNumber })
}

func runClient(_ user: BenchUser) async {
    let url = baseURL.replacingOccurrences(of: "http://", with: "ws://") + "/ws/socket.io/?EIO=4&transport=websocket"
    let joined = NIOLockedValueBox(false)
    do {
        try await WebSocketClient.connect(url: url, configuration: .init(maxFrameSize: 1 << 20), logger: logger) {
            inbound, outbound, _ in
            for try await message in inbound.messages(maxSize: 1 << 20) {
                guard case .text(let text) = message else { continue }
                if text.hasPrefix("42") {
                    if let sent = sentMicros(text) { stats.record(nowMicros() - sent) }
                } else if text == "2" {
                    try await outbound.write(.text("3"))
                } else if text.hasPrefix("0") {
                    try await outbound.write(.text("40" + JSONValue.object(["token": .string(user.token)]).jsonText))
                } else if text.hasPrefix("40") && !joined.withLockedValue({ $0 }) {
                    joined.withLockedValue { $0 = true }
                    stats.connected()
                }
                if stop.withLockedValue({ $0 }) { break }
            }
        }
    } catch {
        if !joined.withLockedValue({ $0 }) { stats.failed() }
    }
    if joined.withLockedValue({ $0 }) { stats.closed() }
}

// MARK: run

let users = try await loadUsers(clientCount)
let redis = try RedisClient(url: env["REDIS_URL"] ?? "redis://127.0.0.1:6379/0")
let bus = RealtimeBus(redis: redis, logger: logger)

let baseline = memory()
say("baseline RSS (KB): \(baseline.sorted { $0.key < $1.key })")
let connectStart = clock.now
let clientTasks = Task {
    await withTaskGroup(of: Void.self) { group in
        // Connects go out in waves of 100, as a crowd of browsers would arrive, not as one SYN flood.
        for (index, user) in users.enumerated() {
            if index > 0 && index % 100 == 0 { try? await Task.sleep(for: .milliseconds(100)) }
            group.addTask { await runClient(user) }
        }
    }
}
while true {
    try await Task.sleep(for: .milliseconds(200))
    let counts = stats.counts
    if counts.connected + counts.failed >= users.count { break }
    if clock.now - connectStart > .seconds(120) {
        say("timed out waiting for connects: \(counts)")
        break
    }
}
say("connected \(stats.counts.connected) of \(users.count) in \(clock.now - connectStart) (failed \(stats.counts.failed))")
try await Task.sleep(for: .seconds(idleWait))
let idle = memory()
say("idle RSS (KB): \(idle.sorted { $0.key < $1.key })")
for (name, kb) in idle.sorted(by: { $0.key < $1.key }) {
    let delta = kb - (baseline[name] ?? 0)
    say("  \(name): +\(delta) KB for the connections")
}

// One event per user per second, spread evenly over each second in 100 slices.
say("publishing one event per user per second for \(duration) s ...")
let slices = 100
var published = 0
let publishStart = clock.now
for second in 0..<duration {
    for slice in 0..<slices {
        let due = publishStart + .seconds(second) + .milliseconds(slice * (1000 / slices))
        try await Task.sleep(until: due, clock: clock)
        let batch = users.indices.filter { $0 % slices == slice }
        await withTaskGroup(of: Void.self) { group in
            for index in batch {
                group.addTask {
                    let data: JSONValue = .object([
                        "chat_id": .string("bench"), "message_id": .string("m\(second)"),
                        "data": .object(["type": .string("status"), "data": .object(["t": .int(nowMicros())])]),
                    ])
                    await bus.emit("events", data, to: .user(users[index].id))
                }
            }
        }
        published += batch.count
    }
}
try await Task.sleep(for: .seconds(2))
let loaded = memory()
stop.withLockedValue { $0 = true }

let latencies = stats.takeLatencies().sorted()
func percentile(_ p: Double) -> String {
    guard !latencies.isEmpty else { return "-" }
    let value = latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]
    return String(format: "%.2f ms", Double(value) / 1000)
}
say("published \(published), received \(latencies.count)")
say("latency p50 \(percentile(0.5)), p90 \(percentile(0.9)), p99 \(percentile(0.99)), max \(percentile(1.0))")
say("RSS under load (KB): \(loaded.sorted { $0.key < $1.key })")
clientTasks.cancel()
try await http.shutdown()
exit(0)
