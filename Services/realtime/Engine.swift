// Engine.IO 4 sessions: the open packet, the server's pings, long-polling queues and the move to websocket.
import Foundation
import NIOConcurrencyHelpers
import Shared

/// The Engine.IO settings, from Open WebUI's variable names.
struct EngineSettings: Sendable {
    /// `WEBSOCKET_SERVER_PING_INTERVAL` seconds (25; fractions accepted).
    var pingInterval: Duration
    /// `WEBSOCKET_SERVER_PING_TIMEOUT` seconds (20).
    var pingTimeout: Duration
    /// The largest packet or payload accepted: 16 MiB, as the original.
    var maxPayload = 16 << 20
    /// `SKIFF_SOCKET_POLLING` (true): long-polling handshakes. The original refuses them ("Invalid transport").
    var allowPolling: Bool

    init(environment env: Shared.Environment) {
        func seconds(_ name: String, _ fallback: Double) -> Duration {
            let value = Double(env.string(name, default: "")) ?? fallback
            return .milliseconds(Int((value > 0 ? value : fallback) * 1000))
        }
        pingInterval = seconds("WEBSOCKET_SERVER_PING_INTERVAL", 25)
        pingTimeout = seconds("WEBSOCKET_SERVER_PING_TIMEOUT", 20)
        allowPolling = env.bool("SKIFF_SOCKET_POLLING", default: true)
    }

    func openPacket(sid: String, upgrades: [String]) -> String {
        let fields = OrderedJSON.object([
            "sid": .string(sid), "upgrades": .array(upgrades.map { .string($0) }),
            "pingTimeout": .int(Int(pingTimeout.milliseconds)), "pingInterval": .int(Int(pingInterval.milliseconds)),
            "maxPayload": .int(maxPayload),
        ])
        return "0" + fields
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}

/// What a long-poll GET gets back.
enum PollResult: Sendable {
    case packets([String])
    /// The session has ended (unknown from now on).
    case closed
    /// The session moved to websocket: HTTP requests for it are refused.
    case upgraded
}

/// Why a session ended, as Engine.IO names it.
enum CloseReason: String, Sendable {
    case clientClose = "client disconnect"
    case pingTimeout = "ping timeout"
    case transportClose = "transport close"
    case serverClose = "server disconnect"
}

/// Where a websocket session's packets go: its connection, which writes them in order and closes on `finish`.
protocol PacketSink: Sendable {
    func write(_ packet: String)
    func finish()
}

/// One Engine.IO session and the Socket.IO connection it carries.
final class EngineSession: Sendable {
    enum Transport: Sendable { case polling, websocket }

    struct State {
        var transport: Transport
        var queue: [String] = []
        var waiter: CheckedContinuation<PollResult, Never>?
        var socket: (any PacketSink)?
        var closed = false
        var nextPing: ContinuousClock.Instant
        var pingSentAt: ContinuousClock.Instant?
    }

    let sid: String
    let state: NIOLockedValueBox<State>
    /// The Socket.IO side: its sid, the bound user and the rooms it is in.
    let socketIO = NIOLockedValueBox(SocketIOState())

    init(sid: String, transport: Transport, settings: EngineSettings) {
        self.sid = sid
        state = NIOLockedValueBox(State(transport: transport, nextPing: .now + settings.pingInterval))
    }

    var isClosed: Bool { state.withLockedValue { $0.closed } }
    /// True once the session runs over a websocket (from the start or after an upgrade).
    var isUpgraded: Bool { state.withLockedValue { $0.transport == .websocket } }

    /// Queues a packet for the client (websocket: written in order by the connection's writer).
    func send(_ packet: String) {
        let waiter = state.withLockedValue { state -> (CheckedContinuation<PollResult, Never>, [String])? in
            guard !state.closed else { return nil }
            if let socket = state.socket {
                socket.write(packet)
                return nil
            }
            state.queue.append(packet)
            guard let waiter = state.waiter else { return nil }
            state.waiter = nil
            defer { state.queue.removeAll() }
            return (waiter, state.queue)
        }
        if let (waiter, packets) = waiter { waiter.resume(returning: .packets(packets)) }
    }

    /// A long-poll GET: what is queued, or the next packets as they come (the server's ping ends every wait).
    func poll() async -> PollResult {
        await withCheckedContinuation { continuation in
            let resolved = state.withLockedValue { state -> (PollResult, CheckedContinuation<PollResult, Never>?)? in
                if state.transport == .websocket { return (.upgraded, nil) }
                if state.closed { return (.closed, nil) }
                if !state.queue.isEmpty {
                    defer { state.queue.removeAll() }
                    return (.packets(state.queue), nil)
                }
                // A second GET while one waits: the older one returns with a noop.
                let older = state.waiter
                state.waiter = continuation
                if let older { return (.packets(["6"]), older) }
                return nil
            }
            guard let (result, older) = resolved else { return }
            if let older { older.resume(returning: result) } else { continuation.resume(returning: result) }
        }
    }

    /// Moves the session to a websocket whose connection writes what `sink` gets (queued packets first). A
    /// waiting GET returns a noop so the polling side lets go.
    func attachWebSocket(_ sink: any PacketSink) {
        let waiter = state.withLockedValue { state -> CheckedContinuation<PollResult, Never>? in
            state.transport = .websocket
            for packet in state.queue { sink.write(packet) }
            state.queue.removeAll()
            if state.closed { sink.finish() } else { state.socket = sink }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: .packets(["6"]))
    }

    /// Ends a pending GET with a noop (during an upgrade probe).
    func releasePoll() {
        let waiter = state.withLockedValue { state -> CheckedContinuation<PollResult, Never>? in
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: .packets(["6"]))
    }

    func pong(settings: EngineSettings) {
        state.withLockedValue { state in
            state.pingSentAt = nil
            state.nextPing = .now + settings.pingInterval
        }
    }

    /// Marks the session closed; a close packet goes to the client when `notify`. Returns false when it
    /// was closed already.
    @discardableResult
    func close(notify: Bool) -> Bool {
        let (first, waiter, socket) = state.withLockedValue {
            state -> (Bool, CheckedContinuation<PollResult, Never>?, (any PacketSink)?) in
            guard !state.closed else { return (false, nil, nil) }
            state.closed = true
            defer {
                state.waiter = nil
                state.socket = nil
                state.queue.removeAll()
            }
            return (true, state.waiter, state.socket)
        }
        if notify { socket?.write("1") }
        socket?.finish()
        waiter?.resume(returning: notify ? .packets(["1"]) : .closed)
        return first
    }

    /// The ping schedule: sends a ping when one is due; true when the client missed its pong.
    func tick(now: ContinuousClock.Instant, settings: EngineSettings) -> Bool {
        let action = state.withLockedValue { state -> Int in
            guard !state.closed else { return 0 }
            if let sent = state.pingSentAt { return now - sent > settings.pingTimeout ? 2 : 0 }
            guard now >= state.nextPing else { return 0 }
            state.pingSentAt = now
            return 1
        }
        if action == 1 { send("2") }
        return action == 2
    }
}

/// Engine.IO session ids: the replica's tag, then random URL-safe characters (20 in all), so that any gateway
/// can tell which replica holds a session.
enum SessionID {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

    static func make(tag: String, length: Int = 20) -> String {
        var id = tag
        var generator = SystemRandomNumberGenerator()
        while id.count < length { id.append(alphabet[Int(generator.next(upperBound: UInt64(alphabet.count)))]) }
        return id
    }
}
