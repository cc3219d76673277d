// What arrives on a session: Engine.IO control packets, Socket.IO connects and the events Open WebUI handles.
import AsyncHTTPClient
import Foundation
import HTTPTypes
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import Shared

/// Checks a session token as the gateway does: signature and expiry, revocation, the user's session stamp,
/// and a verified role (`user` or `admin`).
struct TokenVerifier: Sendable {
    let tokens: SessionTokens
    let redis: RedisClient
    let auth: AuthLookup

    func user(for token: String) async -> SocketUser? {
        guard case .valid(let user)? = await check(token) else { return nil }
        return user
    }

    /// The token's user (`.valid`), a token that no longer holds (nil), or `.unknown` when Redis or auth could
    /// not be asked.
    enum Check { case valid(SocketUser), unknown }

    func check(_ token: String) async -> Check? {
        guard !token.hasPrefix("sk-"), let claims = tokens.verify(token) else { return nil }
        let outcome: SessionCheck.Outcome
        do {
            outcome = try await SessionCheck.run(claims, redis: redis, principal: { try await auth.principal(userID: $0) })
        } catch {
            return .unknown
        }
        guard case .valid(let principal) = outcome, principal.role == "user" || principal.role == "admin" else {
            return nil
        }
        return .valid(SocketUser(
            id: principal.id, name: principal.name ?? "", role: principal.role, email: principal.email ?? "",
            groupIDs: principal.groupIDs ?? [], token: token))
    }
}

/// What realtime asks the chat service, as the socket's user: whether they may read a chat (the chat's pinned
/// flag is the smallest answer of the routes that check access the way reading the chat does), and stamping
/// a chat read.
struct ChatAccess: Sendable {
    /// The largest answer read (a note carries its whole content).
    static let bodyLimit = 64 << 20
    let client: HTTPClient
    let chatURL: String
    let internalSecret: String

    func canRead(chatID: String, user: SocketUser) async -> Bool {
        await call(.GET, "/api/v1/chats/", chatID, "/pinned", user: user) != nil
    }

    /// The `chat:list` data for the user's sockets once the chat is stamped read; nil when it is not theirs.
    func stampRead(chatID: String, user: SocketUser) async -> JSONValue? {
        guard let body = await call(.POST, "/internal/chats/", chatID, "/read", user: user) else { return nil }
        return JSONValue.parse(String(buffer: body))
    }

    /// The note as `GET /api/v1/notes/{id}` answers the user (with `write_access`); nil when they may not read it.
    func note(_ noteID: String, user: SocketUser) async -> JSONValue? {
        guard let body = await call(.GET, "/api/v1/notes/", noteID, "", user: user) else { return nil }
        return JSONValue.parse(String(buffer: body))
    }

    /// Saves a collaborative document's content into its note, as the user; false when refused.
    func saveNote(_ noteID: String, data: JSONValue, user: SocketUser) async -> Bool {
        let body = OrderedJSON.object(["data": data])
        return await call(.POST, "/internal/notes/", noteID, "/content", user: user, body: body) != nil
    }

    /// The answer of `GET path` when it is 200 (a room's access check after its grants changed).
    func get(_ path: String, user: SocketUser) async -> JSONValue? {
        guard let body = await call(.GET, path, "", "", user: user) else { return nil }
        return JSONValue.parse(String(buffer: body)) ?? .null
    }

    /// The body of a 200 answer, or nil for any other answer or failure.
    private func call(
        _ method: NIOHTTP1.HTTPMethod, _ prefix: String, _ id: String, _ suffix: String, user: SocketUser,
        body: String? = nil
    ) async -> ByteBuffer? {
        guard let escaped = id.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(["-", "_"])) else {
            return nil
        }
        var request = HTTPClientRequest(url: chatURL + prefix + escaped + suffix)
        request.method = method
        if let body {
            request.body = .bytes(ByteBuffer(string: body))
            request.headers.add(name: "Content-Type", value: "application/json")
        }
        InternalHeader.add(user.identity, secret: internalSecret, to: &request.headers)
        guard let response = try? await client.execute(request, timeout: .seconds(5)),
            let body = try? await response.body.collect(upTo: Self.bodyLimit)
        else { return nil }
        return response.status.code == 200 ? body : nil
    }
}

/// Presence in Redis, so every replica and service can see who is connected: one key per socket (expiring
/// unless refreshed by heartbeats) and a set of socket ids per user.
struct Presence: Sendable {
    let redis: RedisClient
    let replicaID: String
    static let lifetime = 120

    static func socketKey(_ socketID: String) -> String { "skiff:rt:sess:\(socketID)" }
    static func userKey(_ userID: String) -> String { "skiff:rt:user:\(userID)" }

    func bind(_ socketID: String, _ user: SocketUser) async {
        let record = OrderedJSON.object([
            "id": .string(user.id), "name": .string(user.name), "role": .string(user.role),
            "replica": .string(replicaID), "last_seen_at": .int(Int(Date().timeIntervalSince1970)),
        ])
        _ = try? await redis.send(["SET", Self.socketKey(socketID), record, "EX", String(Self.lifetime)])
        _ = try? await redis.send(["SADD", Self.userKey(user.id), socketID])
        _ = try? await redis.send(["EXPIRE", Self.userKey(user.id), String(Self.lifetime * 2)])
    }

    func refresh(_ socketID: String, _ user: SocketUser) async {
        _ = try? await redis.send(["EXPIRE", Self.socketKey(socketID), String(Self.lifetime)])
        _ = try? await redis.send(["EXPIRE", Self.userKey(user.id), String(Self.lifetime * 2)])
    }

    func remove(_ socketID: String, _ user: SocketUser?) async {
        _ = try? await redis.send(["DEL", Self.socketKey(socketID)])
        if let user { _ = try? await redis.send(["SREM", Self.userKey(user.id), socketID]) }
    }

    static func chatKey(_ chatID: String) -> String { "skiff:rt:chat:\(chatID)" }

    /// Adds a socket to a chat's viewers (`join`) or takes it out (`leave`), then publishes the chat's
    /// `chat:presence` to its room, all in one script so that the last snapshot published is the newest.
    /// Sockets whose presence key has expired (their replica died) are dropped on the way.
    func chatPresence(_ chatID: String, socketID: String, user: SocketUser, joining: Bool) async {
        let viewer = OrderedJSON.object(["id": .string(user.id), "name": .string(user.name)])
        _ = try? await redis.send([
            "EVAL", Self.presenceScript, "1", Self.chatKey(chatID), Self.socketKey(""), chatID, RealtimeBus.channel,
            joining ? "join" : "leave", socketID, viewer, String(Self.lifetime * 2),
        ])
    }

    /// Keeps a socket's chats from expiring while it sends heartbeats.
    func refreshChats(_ chatIDs: [String]) async {
        for chatID in chatIDs { _ = try? await redis.send(["EXPIRE", Self.chatKey(chatID), String(Self.lifetime * 2)]) }
    }

    /// KEYS[1] the chat's viewers (socket id -> {id, name}); ARGV: socket key prefix, chat id, bus channel,
    /// join|leave, socket id, viewer, lifetime. Users are listed once each, sorted by id, as the original.
    static let presenceScript = """
        if ARGV[4] == 'join' then
          redis.call('HSET', KEYS[1], ARGV[5], ARGV[6])
          redis.call('EXPIRE', KEYS[1], tonumber(ARGV[7]))
        else
          redis.call('HDEL', KEYS[1], ARGV[5])
        end
        local entries = redis.call('HGETALL', KEYS[1])
        local users, seen = {}, {}
        for i = 1, #entries, 2 do
          if redis.call('EXISTS', ARGV[1] .. entries[i]) == 1 then
            local ok, viewer = pcall(cjson.decode, entries[i + 1])
            if ok and type(viewer) == 'table' and type(viewer.id) == 'string' and not seen[viewer.id] then
              seen[viewer.id] = true
              users[#users + 1] = viewer
            end
          else
            redis.call('HDEL', KEYS[1], entries[i])
          end
        end
        table.sort(users, function(a, b) return a.id < b.id end)
        local parts = {}
        for _, viewer in ipairs(users) do
          parts[#parts + 1] = '{"id":' .. cjson.encode(viewer.id) .. ',"name":' .. cjson.encode(tostring(viewer.name or '')) .. '}'
        end
        local chat = cjson.encode(ARGV[2])
        redis.call('PUBLISH', ARGV[3], '{"to":{"room":' .. cjson.encode('chat:' .. ARGV[2]) .. '},"event":"events","data":{"chat_id":'
          .. chat .. ',"shared":true,"data":{"type":"chat:presence","data":{"users":[' .. table.concat(parts, ',') .. ']}}}}')
        return #users
        """

    /// Marks the model as in use now (for `/api/usage`); models idle for a minute are pruned on the way.
    func usage(model: String) async {
        let now = Int(Date().timeIntervalSince1970)
        _ = try? await redis.send(["ZADD", UsageKeys.models, String(now), model])
        _ = try? await redis.send(["ZREMRANGEBYSCORE", UsageKeys.models, "-inf", String(now - 60)])
    }
}

/// The replica's sessions and what it does with every packet they carry.
final class Connections: Sendable {
    let settings: EngineSettings
    let replicaID: String
    let hub = SocketHub()
    let verifier: TokenVerifier
    let chats: ChatAccess
    let presence: Presence
    let bus: RealtimeBus
    let logger: Logger
    let documents: DocumentStore
    let saves = PendingSaves()
    private let sessions = NIOLockedValueBox<[String: EngineSession]>([:])

    init(
        settings: EngineSettings, replicaID: String, verifier: TokenVerifier, chats: ChatAccess, presence: Presence,
        bus: RealtimeBus, logger: Logger
    ) {
        self.settings = settings
        self.replicaID = replicaID
        self.verifier = verifier
        self.chats = chats
        self.presence = presence
        self.bus = bus
        self.logger = logger
        self.documents = DocumentStore(redis: presence.redis)
    }

    func open(transport: EngineSession.Transport) -> EngineSession {
        let session = EngineSession(sid: SessionID.make(tag: replicaID), transport: transport, settings: settings)
        sessions.withLockedValue { $0[session.sid] = session }
        return session
    }

    func session(_ sid: String) -> EngineSession? {
        sessions.withLockedValue { $0[sid] }
    }

    /// Ends a session: the client is told when `notify`, and its socket leaves every room.
    func end(_ session: EngineSession, reason: CloseReason, notify: Bool) async {
        guard session.close(notify: notify) else { return }
        sessions.withLockedValue { $0[session.sid] = nil }
        await disconnectSocket(session)
        logger.debug("session closed", metadata: ["sid": "\(session.sid)", "reason": "\(reason.rawValue)"])
    }

    /// The Socket.IO disconnect: the socket leaves its rooms and its presence goes.
    private func disconnectSocket(_ session: EngineSession) async {
        let state = session.socketIO.withLockedValue { state -> SocketIOState in
            defer { state = SocketIOState() }
            return state
        }
        guard let socketID = state.sid else { return }
        hub.remove(socketID, rooms: state.rooms)
        await presence.remove(socketID, state.user)
        if let user = state.user {
            for chatID in Self.chatIDs(in: state.rooms) {
                await presence.chatPresence(chatID, socketID: socketID, user: user, joining: false)
            }
        }
        for document in state.documents {
            await leaveDocument(document, socketID: socketID, session: nil, userID: state.user?.id ?? socketID)
        }
    }

    /// A socket leaves a room, with what leaving means for it: chat presence, a collaborative document.
    func leave(_ room: String, socketID: String, session: EngineSession) async {
        let user = session.socketIO.withLockedValue { $0.user }
        if room.hasPrefix("doc_") {
            await leaveDocument(String(room.dropFirst(4)), socketID: socketID, session: session, userID: user?.id ?? socketID)
            return
        }
        hub.leave(room, socketID, session: session)
        if room.hasPrefix("chat:"), let user {
            await presence.chatPresence(String(room.dropFirst(5)), socketID: socketID, user: user, joining: false)
        }
    }

    /// Room control from services: `close` empties a room; `recheck` keeps only the sockets whose user still
    /// gets 200 from the room's access route (asked once per user), and refreshes their write access to a
    /// collaborative note.
    func control(_ message: JSONValue) async {
        guard let room = message["room"]?.stringValue else { return }
        let members = hub.members(of: room)
        switch message["control"]?.stringValue {
        case "close":
            for (socketID, session) in members { await leave(room, socketID: socketID, session: session) }
        case "recheck":
            guard let path = message["access"]?.stringValue else { return }
            var answers: [String: JSONValue?] = [:]
            for (socketID, session) in members {
                guard let user = session.socketIO.withLockedValue({ $0.user }) else {
                    await leave(room, socketID: socketID, session: session)
                    continue
                }
                if answers[user.id] == nil { answers[user.id] = .some(await chats.get(path, user: user)) }
                guard let answer = answers[user.id] ?? nil else {
                    await leave(room, socketID: socketID, session: session)
                    continue
                }
                if room.hasPrefix("doc_") {
                    let document = String(room.dropFirst(4))
                    let writable = answer["write_access"]?.boolValue == true
                    session.socketIO.withLockedValue { state in
                        if writable { state.writable.insert(document) } else { state.writable.remove(document) }
                    }
                }
            }
        default:
            break
        }
    }

    static func chatIDs(in rooms: Set<String>) -> [String] {
        rooms.compactMap { $0.hasPrefix("chat:") ? String($0.dropFirst(5)) : nil }
    }

    /// Sends pings when due and ends the sessions that missed their pong; every half minute checks the tokens of
    /// signed-in sockets again (as the original), disconnecting those whose token no longer holds (signed out,
    /// password changed, demoted) and refreshing the role, name and groups of the others. Runs until cancelled.
    func runPings() async {
        let step = Duration.milliseconds(max(50, Int(min(settings.pingInterval, settings.pingTimeout).milliseconds / 4)))
        var lastTokenCheck = ContinuousClock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: step)
            let now = ContinuousClock.now
            let all = sessions.withLockedValue { Array($0.values) }
            let expired = all.filter { $0.tick(now: now, settings: settings) }
            if !expired.isEmpty {
                // Concurrently: one session's Redis clean-up must not hold back everyone else's pings.
                await withTaskGroup(of: Void.self) { group in
                    for session in expired { group.addTask { await self.end(session, reason: .pingTimeout, notify: true) } }
                }
            }
            if now - lastTokenCheck >= Self.tokenCheckInterval {
                lastTokenCheck = now
                await recheckTokens(all)
            }
        }
    }

    static let tokenCheckInterval = Duration.seconds(30)

    /// Each distinct token is checked once; when auth or Redis cannot answer, sockets stay as they are.
    func recheckTokens(_ all: [EngineSession]) async {
        var checked: [String: TokenVerifier.Check?] = [:]
        for session in all {
            guard let user = session.socketIO.withLockedValue({ $0.user }) else { continue }
            if checked[user.token] == nil { checked[user.token] = .some(await verifier.check(user.token)) }
            switch checked[user.token] ?? nil {
            case .unknown?:
                continue
            case .valid(let fresh)? where fresh.id == user.id:
                session.socketIO.withLockedValue { $0.user = fresh }
            default:
                _ = await kick(session)
            }
        }
    }

    /// Ends every session (on shutdown), telling the clients so they reconnect elsewhere.
    func closeAll() async {
        let all = sessions.withLockedValue { Array($0.values) }
        await withTaskGroup(of: Void.self) { group in
            for session in all { group.addTask { await self.end(session, reason: .serverClose, notify: true) } }
        }
    }

    // MARK: Engine.IO

    /// Handles one Engine.IO packet from the client; false when the session has ended.
    func receive(_ text: Substring, on session: EngineSession) async -> Bool {
        guard let type = text.first else { return !session.isClosed }
        switch type {
        case "1":
            await end(session, reason: .clientClose, notify: false)
            return false
        case "3":
            session.pong(settings: settings)
        case "4":
            await socketIO(text.dropFirst(), on: session)
        default:
            break  // `2` from a client, `5`/`6` outside an upgrade, unknown types: ignored, as the original
        }
        return !session.isClosed
    }

    // MARK: Socket.IO

    private func socketIO(_ text: Substring, on session: EngineSession) async {
        guard let packet = SocketIOPacket.parse(text) else {
            logger.debug("malformed Socket.IO packet", metadata: ["sid": "\(session.sid)"])
            return
        }
        let connected = session.socketIO.withLockedValue { $0.sid }
        switch packet.kind {
        case .connect:
            guard packet.namespace == "/" else {
                session.send("44\(packet.namespace),\"Unable to connect\"")
                return
            }
            guard connected == nil else {
                session.send("44\"Unable to connect\"")
                return
            }
            let socketID = SessionID.make(tag: "")
            session.socketIO.withLockedValue { $0.sid = socketID }
            hub.add(socketID, session)
            session.send("40" + OrderedJSON.object(["sid": .string(socketID)]))
            // The original accepts every connect and binds the user only when the token checks out.
            if let token = packet.payload?["token"]?.stringValue, let user = await verifier.user(for: token) {
                await bind(user, socketID: socketID, session: session)
            }
        case .disconnect:
            guard packet.namespace == "/", connected != nil else { return }
            await disconnectSocket(session)
        case .event:
            guard packet.namespace == "/", let socketID = connected, case .array(let items)? = packet.payload,
                let name = items.first?.stringValue
            else { return }
            let result = await event(name, Array(items.dropFirst()), socketID: socketID, session: session)
            if let id = packet.ackID, case .answer(let value) = result { session.send(SocketIOPacket.ack(id, value)) }
        case .ack, .connectError, .binaryEvent, .binaryAck:
            break  // no server-to-client calls wait for acks yet; binary is not used by Open WebUI's clients
        }
    }

    private func bind(_ user: SocketUser, socketID: String, session: EngineSession) async {
        let previous = session.socketIO.withLockedValue { state -> SocketUser? in
            defer { state.user = user }
            return state.user
        }
        if let previous, previous.id != user.id { hub.leave("user:\(previous.id)", socketID, session: session) }
        hub.join("user:\(user.id)", socketID, session: session)
        await presence.bind(socketID, user)
    }

    /// What an event handler answers: a value for the ack (nil = empty list), nothing at all (the handler
    /// failed, as python-socketio sends no ack then), or a disconnect of the socket.
    enum EventResult {
        case answer(JSONValue?)
        case noAnswer
    }

    static let privateChatUnavailable: JSONValue = .object([
        "ok": .bool(false), "error": .string("Private chat is unavailable or the session changed."),
    ])

    private func event(_ name: String, _ args: [JSONValue], socketID: String, session: EngineSession) async
        -> EventResult
    {
        let user = session.socketIO.withLockedValue { $0.user }
        let data = args.first
        switch name {
        case "connect", "disconnect", "connect_error", "disconnecting":
            return .noAnswer
        case "user-join":
            guard case .object? = data else { return .noAnswer }
            guard let token = data?["auth"]?["token"]?.stringValue, let verified = await verifier.user(for: token) else {
                return .answer(nil)
            }
            await bind(verified, socketID: socketID, session: session)
            return .answer(.object(["id": .string(verified.id), "name": .string(verified.name)]))
        case "heartbeat":
            guard let user else { return await kick(session) }
            await presence.refresh(socketID, user)
            await presence.refreshChats(Self.chatIDs(in: session.socketIO.withLockedValue { $0.rooms }))
            return .answer(nil)
        case "usage":
            guard let user else { return await kick(session) }
            guard let model = data?["model"]?.stringValue else { return .noAnswer }
            await presence.refresh(socketID, user)
            await presence.usage(model: model)
            return .answer(nil)
        case "events:chat":
            guard let user else { return await kick(session) }
            return await chatEvent(data, user: user, socketID: socketID, session: session)
        case "join-note":
            return await joinNote(data, socketID: socketID, session: session)
        case "join-channels", "events:channel":
            return .answer(nil)  // no channels yet: the socket joins no such room
        default:
            if name.hasPrefix("encryption:") { return .answer(Self.privateChatUnavailable) }
            if name.hasPrefix("ydoc:") {
                return await documentEvent(name, data, user: user, socketID: socketID, session: session)
            }
            // Other events fall to the original's catch-all; names with two colons need a signed-in socket.
            if name.filter({ $0 == ":" }).count == 2, user == nil { return await kick(session) }
            return .answer(nil)
        }
    }

    /// The original disconnects a socket that sends a signed-in event without a valid session.
    func kick(_ session: EngineSession) async -> EventResult {
        session.send("41")
        await disconnectSocket(session)
        return .noAnswer
    }

    static func isSavedChatID(_ id: String) -> Bool {
        !id.isEmpty && !id.hasPrefix("temporary:") && !id.hasPrefix("local:") && !id.hasPrefix("channel:")
    }

    private func chatEvent(_ data: JSONValue?, user: SocketUser, socketID: String, session: EngineSession) async
        -> EventResult
    {
        guard case .object? = data, let body = data?["data"], case .object = body else { return .noAnswer }
        let chatID = data?["chat_id"]?.stringValue
        switch body["type"]?.stringValue {
        case "join":
            guard let chatID, Self.isSavedChatID(chatID), await chats.canRead(chatID: chatID, user: user) else {
                return .answer(.bool(false))
            }
            hub.join("chat:\(chatID)", socketID, session: session)
            await presence.chatPresence(chatID, socketID: socketID, user: user, joining: true)
            return .answer(.bool(true))
        case "leave":
            guard let chatID, Self.isSavedChatID(chatID) else { return .answer(.bool(false)) }
            hub.leave("chat:\(chatID)", socketID, session: session)
            await presence.chatPresence(chatID, socketID: socketID, user: user, joining: false)
            return .answer(.bool(true))
        case "last_read_at":
            guard let chatID else { return .noAnswer }
            if let read = await chats.stampRead(chatID: chatID, user: user) {
                let payload: JSONValue = .object([
                    "chat_id": .string(chatID), "data": .object(["type": .string("chat:list"), "data": read]),
                ])
                await bus.emit("events", payload, to: .user(user.id))
            }
            return .answer(nil)
        case "typing":
            guard let chatID, Self.isSavedChatID(chatID), let typing = body["data"]?["typing"]?.boolValue,
                session.socketIO.withLockedValue({ $0.rooms.contains("chat:\(chatID)") })
            else { return .answer(.bool(false)) }
            // Through the bus, so the chat's sockets on every replica see it (all but the sender's).
            let payload: JSONValue = .object([
                "chat_id": .string(chatID), "user_id": .string(user.id),
                "user": .object(["id": .string(user.id), "name": .string(user.name)]), "shared": .bool(true),
                "data": .object(["type": .string("typing"), "data": .object(["typing": .bool(typing)])]),
            ])
            await bus.emit("events", payload, to: .room("chat:\(chatID)"), skip: socketID)
            return .answer(.bool(true))
        default:
            return .answer(nil)
        }
    }
}
