// Socket.IO 5 packets carried in Engine.IO messages, and the rooms of the sockets this replica holds.
import Foundation
import NIOConcurrencyHelpers
import Shared

/// The caller a socket was bound to by its connect auth or `user-join`.
struct SocketUser: Sendable, Equatable {
    var id: String
    var name: String
    var role: String
    var email: String = ""
    var groupIDs: [String] = []
    /// Checked again every half minute: a socket whose token stops being valid is disconnected.
    var token: String

    /// Who the socket's user is to other services (groups matter for shared notes).
    var identity: Identity {
        Identity(userID: id, role: role, method: .jwt, name: name, email: email, groupIDs: groupIDs)
    }
}

/// A session's Socket.IO side (only the main namespace `/` exists, as in Open WebUI).
struct SocketIOState: Sendable {
    var sid: String?
    var user: SocketUser?
    var rooms: Set<String> = []
    /// Collaborative documents the socket may change (write access is checked when it joins, and again when
    /// the note's grants change).
    var writable: Set<String> = []

    /// The documents whose rooms (`doc_<id>`) the socket is in.
    var documents: [String] { rooms.compactMap { $0.hasPrefix("doc_") ? String($0.dropFirst(4)) : nil } }
}

/// One decoded Socket.IO packet.
struct SocketIOPacket: Equatable {
    enum Kind: Int { case connect = 0, disconnect, event, ack, connectError, binaryEvent, binaryAck }
    var kind: Kind
    var namespace: String
    var ackID: Int?
    var payload: JSONValue?

    /// Parses `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`; nil for anything malformed.
    static func parse(_ text: Substring) -> SocketIOPacket? {
        var rest = text
        guard let first = rest.first, let digit = first.wholeNumberValue, let kind = Kind(rawValue: digit) else {
            return nil
        }
        rest = rest.dropFirst()
        if kind == .binaryEvent || kind == .binaryAck {
            let count = rest.prefix { $0.isASCII && $0.isNumber }
            guard !count.isEmpty, rest.dropFirst(count.count).first == "-" else { return nil }
            rest = rest.dropFirst(count.count + 1)
        }
        var namespace = "/"
        if rest.first == "/" {
            guard let comma = rest.firstIndex(of: ",") else {
                return SocketIOPacket(kind: kind, namespace: String(rest.prefix { $0 != "?" }), ackID: nil, payload: nil)
            }
            namespace = String(rest[..<comma].prefix { $0 != "?" })
            rest = rest[rest.index(after: comma)...]
        }
        let digits = rest.prefix { $0.isASCII && $0.isNumber }
        var ackID: Int?
        if !digits.isEmpty {
            guard digits.count <= 15, let id = Int(digits) else { return nil }
            ackID = id
            rest = rest.dropFirst(digits.count)
        }
        var payload: JSONValue?
        if !rest.isEmpty {
            guard let value = JSONValue.parse(String(rest)) else { return nil }
            payload = value
        }
        return SocketIOPacket(kind: kind, namespace: namespace, ackID: ackID, payload: payload)
    }

    /// `42["event",data]` as Engine.IO text, with the data already encoded.
    static func event(_ name: String, dataJSON: String) -> String {
        "42[" + JSONValue.string(name).jsonText + "," + dataJSON + "]"
    }

    /// `43<id>[...]`: nil answers an empty list, as python-socketio does for `None`.
    static func ack(_ id: Int, _ value: JSONValue?) -> String {
        "43\(id)[" + (value.map { $0.jsonText } ?? "") + "]"
    }
}

/// The sockets this replica holds, by Socket.IO sid, and the rooms they are in.
final class SocketHub: Sendable {
    private struct State {
        var sockets: [String: EngineSession] = [:]
        var rooms: [String: Set<String>] = [:]
    }
    private let state = NIOLockedValueBox(State())

    func add(_ socketID: String, _ session: EngineSession) {
        state.withLockedValue { $0.sockets[socketID] = session }
    }

    /// Removes a socket and its room memberships.
    func remove(_ socketID: String, rooms: Set<String>) {
        state.withLockedValue { state in
            state.sockets[socketID] = nil
            for room in rooms { Self.leave(&state, room, socketID) }
        }
    }

    func join(_ room: String, _ socketID: String, session: EngineSession) {
        state.withLockedValue { $0.rooms[room, default: []].insert(socketID) }
        session.socketIO.withLockedValue { _ = $0.rooms.insert(room) }
    }

    func leave(_ room: String, _ socketID: String, session: EngineSession) {
        state.withLockedValue { Self.leave(&$0, room, socketID) }
        session.socketIO.withLockedValue { _ = $0.rooms.remove(room) }
    }

    private static func leave(_ state: inout State, _ room: String, _ socketID: String) {
        state.rooms[room]?.remove(socketID)
        if state.rooms[room]?.isEmpty == true { state.rooms[room] = nil }
    }

    /// The local sockets in a room.
    func members(of room: String) -> [(String, EngineSession)] {
        state.withLockedValue { state in
            (state.rooms[room] ?? []).compactMap { id in state.sockets[id].map { (id, $0) } }
        }
    }

    /// Sends an Engine.IO packet to the local sockets a target names; returns how many got it. The packet is
    /// built only when some socket here gets it (every replica reads every bus message).
    @discardableResult
    func deliver(_ packet: @autoclosure () -> String, room: String? = nil, socketID: String? = nil, skip: String? = nil)
        -> Int
    {
        let sessions = state.withLockedValue { state -> [EngineSession] in
            if let socketID { return socketID == skip ? [] : state.sockets[socketID].map { [$0] } ?? [] }
            guard let room, let members = state.rooms[room] else { return [] }
            return members.compactMap { $0 == skip ? nil : state.sockets[$0] }
        }
        guard !sessions.isEmpty else { return 0 }
        let text = packet()
        for session in sessions { session.send(text) }
        return sessions.count
    }

    /// Delivers one message from the bus: `{to: {user|room|session}, event, data, skip?}`.
    @discardableResult
    func deliver(busMessage text: String) -> Int {
        guard let message = JSONValue.parse(text), let to = message["to"],
            let event = message["event"]?.stringValue
        else { return 0 }
        let data = message["data"] ?? .null
        func packet() -> String { SocketIOPacket.event(event, dataJSON: data.jsonText) }
        let skip = message["skip"]?.stringValue
        if let user = to["user"]?.stringValue { return deliver(packet(), room: "user:\(user)", skip: skip) }
        if let room = to["room"]?.stringValue { return deliver(packet(), room: room, skip: skip) }
        if let session = to["session"]?.stringValue { return deliver(packet(), socketID: session, skip: skip) }
        return 0
    }
}
