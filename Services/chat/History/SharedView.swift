// What a shared link shows: the snapshot taken when the chat was shared, shaped for the reader.
import Foundation
import Shared

struct SharedView {
    let share: ChatStore.Share
    let snapshot: [String: JSONValue]

    init(share: ChatStore.Share) throws {
        self.share = share
        guard let snapshot = JSONValue.parse(share.chat)?.objectValue else { throw APIError.notFound }
        self.snapshot = snapshot
    }

    /// The snapshot's chat JSON as `reader` may see it: a reader other than the owner loses the owner's
    /// settings (`params`, tools, filters, variables) and the private `meta` of messages they did not write.
    func shaped(for reader: Identity) -> [String: JSONValue] {
        var chat = snapshot
        let owner = share.userID
        if reader.userID != owner {
            for key in ["params", "tool_servers", "tool_ids", "filter_ids", "variables"] { chat[key] = nil }
        }
        ChatDocument.forEachMessage(&chat) { message in
            if message["role"]?.stringValue == "user" {
                let author = ChatDocument.nonEmpty(message["user_id"]) ?? ChatDocument.nonEmpty(message["user"]?["id"]) ?? owner
                message["user_id"] = .string(author)
                if message["user"]?["id"]?.stringValue != author {
                    message["user"] = .object(["id": .string(author), "name": .string(author == reader.userID ? reader.name : "")])
                }
            }
            if (ChatDocument.nonEmpty(message["user_id"]) ?? owner) != reader.userID { message["meta"] = nil }
        }
        chat["share_mode"] = .null
        return chat
    }

    /// `ChatResponse` of the share: its own id, the owner, the snapshot.
    func response(for reader: Identity) -> Body {
        Body(
            id: share.id, userID: share.userID, title: share.title, chat: .object(shaped(for: reader)),
            updatedAt: share.updatedAt, createdAt: share.createdAt, shareID: share.id)
    }

    struct Body: Encodable {
        var id: String
        var userID: String
        var title: String
        var chat: JSONValue
        var updatedAt: Int
        var createdAt: Int
        var shareID: String

        enum CodingKeys: String, CodingKey {
            case id, title, chat, archived, pinned, meta, variables, tasks, summary
            case userID = "user_id"
            case updatedAt = "updated_at"
            case createdAt = "created_at"
            case shareID = "share_id"
            case folderID = "folder_id"
            case currentMessageID = "current_message_id"
            case contextUsage = "context_usage"
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id)
            try c.encode(userID, forKey: .userID)
            try c.encode(title, forKey: .title)
            try c.encode(chat, forKey: .chat)
            try c.encode(updatedAt, forKey: .updatedAt)
            try c.encode(createdAt, forKey: .createdAt)
            try c.encode(shareID, forKey: .shareID)
            try c.encode(false, forKey: .archived)
            try c.encode(false, forKey: .pinned)
            try c.encode(JSONValue.object([:]), forKey: .meta)
            try c.encode(JSONValue.object([:]), forKey: .variables)
            try c.encodeNil(forKey: .folderID)
            try c.encodeNil(forKey: .tasks)
            try c.encodeNil(forKey: .summary)
            try c.encodeNil(forKey: .currentMessageID)
            try c.encodeNil(forKey: .contextUsage)
        }
    }
}
