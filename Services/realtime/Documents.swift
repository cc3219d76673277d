// Collaborative documents (`ydoc:*`): the Yjs updates of each open document kept in Redis for every replica,
// relayed to the other sockets in the document's room, and the note's content saved half a second after the
// last edit. Skiff does not merge Yjs updates: a joining client gets the stored updates one by one (the first
// as `ydoc:document:state`, the rest as `ydoc:document:update`), which Yjs applies in any order.
import Foundation
import NIOConcurrencyHelpers
import Shared

/// The Redis side: `skiff:rt:ydoc:<doc>:updates` (JSON byte arrays in arrival order), `:size` and `:users` (the
/// Socket.IO sids in the document, on any replica). Which documents one socket is in its replica knows: they
/// are its `doc_` rooms.
struct DocumentStore: Sendable {
    let redis: RedisClient
    static let maxDocumentsPerSession = 20
    static let maxDocumentSize = 2 * 1024 * 1024
    /// Abandoned documents (their replica died) go after a day without edits.
    static let lifetime = 86_400

    static func key(_ document: String, _ part: String) -> String { "skiff:rt:ydoc:\(document):\(part)" }

    /// Stores an update. With `initialize`, only into an empty document: the stored updates come back instead
    /// when another client seeded it first. nil: refused (over the size limit).
    enum Appended { case stored, seeded([String]), refused }

    static let appendScript = """
        if ARGV[4] == '1' then
          local existing = redis.call('LRANGE', KEYS[1], 0, -1)
          if #existing > 0 then return existing end
        end
        local size = redis.call('INCRBY', KEYS[2], tonumber(ARGV[2]))
        if size > tonumber(ARGV[3]) then
          redis.call('DECRBY', KEYS[2], tonumber(ARGV[2]))
          return 0
        end
        redis.call('RPUSH', KEYS[1], ARGV[1])
        redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
        redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
        return 1
        """

    func append(_ document: String, update: [UInt8], initialize: Bool) async -> Appended {
        let text = "[" + update.map(String.init).joined(separator: ",") + "]"
        guard
            let reply = try? await redis.send([
                "EVAL", Self.appendScript, "2", Self.key(document, "updates"), Self.key(document, "size"), text,
                String(update.count), String(Self.maxDocumentSize), initialize ? "1" : "0", String(Self.lifetime),
            ])
        else { return .refused }
        if let stored = reply.array { return .seeded(stored.compactMap(\.string)) }
        return reply.int == 1 ? .stored : .refused
    }

    func updates(_ document: String) async -> [String] {
        (try? await redis.send(["LRANGE", Self.key(document, "updates"), "0", "-1"]))?.array?.compactMap(\.string) ?? []
    }

    func users(_ document: String) async -> [String] {
        (try? await redis.send(["SMEMBERS", Self.key(document, "users")]))?.array?.compactMap(\.string) ?? []
    }

    func add(_ sid: String, to document: String) async {
        _ = try? await redis.send(["SADD", Self.key(document, "users"), sid])
        _ = try? await redis.send(["EXPIRE", Self.key(document, "users"), String(Self.lifetime)])
    }

    func remove(_ sid: String, from document: String) async {
        _ = try? await redis.send(["SREM", Self.key(document, "users"), sid])
    }

    func clear(_ document: String) async {
        _ = try? await redis.send([
            "DEL", Self.key(document, "updates"), Self.key(document, "users"), Self.key(document, "size"),
        ])
    }
}

/// Pending note saves of this replica, one per document (a newer edit replaces the waiting save).
final class PendingSaves: Sendable {
    private let tasks = NIOLockedValueBox<[String: (UUID, Task<Void, Never>)]>([:])

    func schedule(_ document: String, _ work: @escaping @Sendable () async -> Void) {
        let id = UUID()
        let task = Task {
            try? await Task.sleep(for: .milliseconds(500))
            guard !Task.isCancelled else { return }
            await work()
            self.tasks.withLockedValue { tasks in
                if tasks[document]?.0 == id { tasks[document] = nil }
            }
        }
        let previous = tasks.withLockedValue { tasks -> Task<Void, Never>? in
            defer { tasks[document] = (id, task) }
            return tasks[document]?.1
        }
        previous?.cancel()
    }

    func isPending(_ document: String) -> Bool {
        tasks.withLockedValue { $0[document] != nil }
    }
}

extension Connections {
    /// `note_abc` is read as `note:abc`, so the access checks, which key on `note:`, always apply.
    static func documentID(_ data: JSONValue?) -> String? {
        guard let id = data?["document_id"]?.stringValue, !id.isEmpty else { return nil }
        return id.hasPrefix("note_") ? "note:" + id.dropFirst(5) : id
    }

    static func noteID(ofDocument document: String) -> String? {
        guard document.hasPrefix("note:") else { return nil }
        return document.dropFirst(5).split(separator: ":", omittingEmptySubsequences: false).first.map(String.init)
    }

    /// Sends the stored state to one socket: the first update as `ydoc:document:state` (`[0, 0]`, an empty
    /// document, when there is none), the rest as updates from nobody in particular.
    func sendState(
        _ document: String, updates: [String], extra: [(String, JSONValue)], session: EngineSession
    ) {
        let first = updates.first ?? "[0,0]"
        var fields = "{\"document_id\":" + JSONValue.string(document).jsonText + ",\"state\":" + first
        for (key, value) in extra { fields += "," + JSONValue.string(key).jsonText + ":" + value.jsonText }
        session.send(SocketIOPacket.event("ydoc:document:state", dataJSON: fields + "}"))
        for update in updates.dropFirst() { session.send(Self.updatePacket(document, update: update, from: "")) }
    }

    static func updatePacket(_ document: String, update: String, from sid: String, userID: String? = nil) -> String {
        let data =
            "{\"document_id\":" + JSONValue.string(document).jsonText + ",\"user_id\":"
            + JSONValue.string(userID ?? sid).jsonText + ",\"update\":" + update + ",\"socket_id\":"
            + JSONValue.string(sid).jsonText + "}"
        return SocketIOPacket.event("ydoc:document:update", dataJSON: data)
    }

    /// A byte array as a client sends it; nil for anything else.
    static func bytes(_ value: JSONValue?) -> [UInt8]? {
        guard case .array(let items)? = value, !items.isEmpty else { return nil }
        var result: [UInt8] = []
        result.reserveCapacity(items.count)
        for item in items {
            guard case .int(let byte) = item, (0...255).contains(byte) else { return nil }
            result.append(UInt8(byte))
        }
        return result
    }

    func documentEvent(_ name: String, _ data: JSONValue?, user: SocketUser?, socketID: String, session: EngineSession)
        async -> EventResult
    {
        guard let user else { return await kick(session) }
        guard case .object? = data, let document = Self.documentID(data) else { return .noAnswer }
        let room = "doc_\(document)"
        let inRoom = session.socketIO.withLockedValue { $0.rooms.contains(room) }
        switch name {
        case "ydoc:document:join":
            var content: JSONValue = .null
            var writable = true
            if let noteID = Self.noteID(ofDocument: document) {
                guard let note = await chats.note(noteID, user: user) else { return .answer(nil) }
                content = note["data"]?["content"] ?? .null
                writable = note["write_access"]?.boolValue == true
            }
            let full = session.socketIO.withLockedValue { state in
                !state.rooms.contains(room) && state.documents.count >= DocumentStore.maxDocumentsPerSession
            }
            if full { return .answer(nil) }
            await documents.add(socketID, to: document)
            hub.join(room, socketID, session: session)
            session.socketIO.withLockedValue { state in
                if writable { state.writable.insert(document) } else { state.writable.remove(document) }
            }
            sendState(document, updates: await documents.updates(document), extra: [("content", content)], session: session)
            let joined: JSONValue = .object([
                "document_id": .string(document), "user_id": data?["user_id"] ?? .string(socketID),
                "user_name": data?["user_name"] ?? .string("Anonymous"),
                "user_color": data?["user_color"] ?? .string("#000000"),
            ])
            await bus.emit("ydoc:user:joined", joined, to: .room(room), skip: socketID)
            return .answer(nil)
        case "ydoc:document:state":
            // A document exists while it has updates (a Redis list goes with its last element).
            guard inRoom else { return .answer(nil) }
            let updates = await documents.updates(document)
            guard !updates.isEmpty else { return .answer(nil) }
            let sessions = await documents.users(document).sorted()
            sendState(document, updates: updates, extra: [("sessions", .array(sessions.map(JSONValue.string)))], session: session)
            return .answer(nil)
        case "ydoc:document:update":
            // Write access as checked at join (and again whenever the note's grants change).
            guard inRoom, session.socketIO.withLockedValue({ $0.writable.contains(document) }) else { return .answer(nil) }
            let noteID = Self.noteID(ofDocument: document)
            let initialize = data?["initialize"]?.isTruthy ?? false
            var answer: JSONValue?
            if let update = Self.bytes(data?["update"]) {
                // `[0, 0]` is the empty update: nothing to keep, and stored it would read as an empty document.
                let result: DocumentStore.Appended =
                    update == [0, 0] ? .stored : await documents.append(document, update: update, initialize: initialize)
                switch result {
                case .seeded(let stored):
                    // Another client seeded the document first: this one gets that state instead of its own.
                    for later in stored.dropFirst() { session.send(Self.updatePacket(document, update: later, from: "")) }
                    return .answer(stored.first.flatMap(JSONValue.parse))
                case .stored:
                    if update != [0, 0] {
                        let relay: JSONValue = .object([
                            "document_id": .string(document), "user_id": data?["user_id"] ?? .string(socketID),
                            "update": data?["update"] ?? .null, "socket_id": .string(socketID),
                        ])
                        await bus.emit("ydoc:document:update", relay, to: .room(room), skip: socketID)
                    }
                    if initialize { answer = data?["update"] }
                case .refused:
                    logger.warning("document update refused (over the size limit)", metadata: ["document": "\(document)"])
                }
            } else if initialize {
                let stored = await documents.updates(document)
                if !stored.isEmpty {
                    for later in stored.dropFirst() { session.send(Self.updatePacket(document, update: later, from: "")) }
                    return .answer(stored.first.flatMap(JSONValue.parse))
                }
            }
            if let noteID, let content = data?["data"], content.isTruthy {
                scheduleSave(document, noteID: noteID, data: content, user: user)
            }
            return .answer(answer)
        case "ydoc:document:leave":
            await leaveDocument(document, socketID: socketID, session: session, userID: user.id)
            return .answer(nil)
        case "ydoc:awareness:update":
            guard inRoom, let update = data?["update"] else { return .answer(nil) }
            let relay: JSONValue = .object([
                "document_id": .string(document), "user_id": .string(user.id), "update": update,
            ])
            await bus.emit("ydoc:awareness:update", relay, to: .room(room), skip: socketID)
            return .answer(nil)
        default:
            return .answer(nil)
        }
    }

    func leaveDocument(_ document: String, socketID: String, session: EngineSession?, userID: String) async {
        await documents.remove(socketID, from: document)
        if let session {
            hub.leave("doc_\(document)", socketID, session: session)
            session.socketIO.withLockedValue { _ = $0.writable.remove(document) }
        }
        let left: JSONValue = .object(["document_id": .string(document), "user_id": .string(userID)])
        await bus.emit("ydoc:user:left", left, to: .room("doc_\(document)"))
        if await documents.users(document).isEmpty, !saves.isPending(document) { await documents.clear(document) }
    }

    /// Saves the note's content half a second after the last edit that carried it, as the editing user; the
    /// document goes from Redis once saved if nobody has it open any more.
    func scheduleSave(_ document: String, noteID: String, data: JSONValue, user: SocketUser) {
        let chats = self.chats
        let documents = self.documents
        let saves = self.saves
        saves.schedule(document) {
            let saved = await chats.saveNote(noteID, data: data, user: user)
            if saved, await documents.users(document).isEmpty { await documents.clear(document) }
        }
    }

    /// `join-note`: the socket joins `note:<id>` when the token's user may read the note.
    func joinNote(_ data: JSONValue?, socketID: String, session: EngineSession) async -> EventResult {
        guard let token = data?["auth"]?["token"]?.stringValue, let user = await verifier.user(for: token) else {
            return .answer(nil)
        }
        guard let noteID = data?["note_id"]?.stringValue else { return .noAnswer }
        guard await chats.note(noteID, user: user) != nil else { return .answer(nil) }
        hub.join("note:\(noteID)", socketID, session: session)
        return .answer(nil)
    }
}
