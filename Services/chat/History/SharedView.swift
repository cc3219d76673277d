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
    func response(for reader: Identity) -> String {
        OrderedJSON.object([
            "id": .string(share.id), "user_id": .string(share.userID), "title": .string(share.title),
            "chat": .object(shaped(for: reader)), "updated_at": .int(share.updatedAt), "created_at": .int(share.createdAt),
            "share_id": .string(share.id), "archived": .bool(false), "pinned": .bool(false), "meta": .object([:]),
            "variables": .object([:]), "folder_id": .null, "tasks": .null, "summary": .null, "current_message_id": .null,
            "context_usage": .null,
        ])
    }
}
