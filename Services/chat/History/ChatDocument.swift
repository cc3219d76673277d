// The chat JSON the web app keeps: a message tree under `history` (and the older `messages` list).
// Pure functions over it: authorship, merging a client's copy into the stored one, the current message.
import Foundation
import Shared

enum ChatDocument {
    /// Visits every message of the tree and of the legacy `messages` list.
    static func forEachMessage(_ chat: inout [String: JSONValue], _ body: (inout [String: JSONValue]) -> Void) {
        if case .object(var history)? = chat["history"], case .object(var messages)? = history["messages"] {
            for (id, value) in messages {
                guard case .object(var message) = value else { continue }
                body(&message)
                messages[id] = .object(message)
            }
            history["messages"] = .object(messages)
            chat["history"] = .object(history)
        }
        if case .array(var list)? = chat["messages"] {
            for index in list.indices {
                guard case .object(var message) = list[index] else { continue }
                body(&message)
                list[index] = .object(message)
            }
            chat["messages"] = .array(list)
        }
    }

    /// Marks every message the client sent as the caller's, and user messages with the caller's name.
    static func setAuthors(_ chat: inout [String: JSONValue], userID: String, name: String) {
        func annotate(_ message: inout [String: JSONValue]) {
            message["user_id"] = .string(userID)
            if message["role"]?.stringValue == "user" {
                message["user"] = .object(["id": .string(userID), "name": .string(name)])
            }
        }
        forEachMessage(&chat, annotate)
    }

    /// The id of the message the chat shows last: `history.currentId`, else the legacy fields, else the last
    /// message of the `messages` list.
    static func currentMessageID(_ chat: [String: JSONValue]) -> String? {
        if let id = nonEmpty(chat["history"]?["currentId"]) ?? nonEmpty(chat["currentId"])
            ?? nonEmpty(chat["branchPointMessageId"])
        {
            return id
        }
        if case .array(let list)? = chat["messages"] {
            for message in list.reversed() {
                if let id = nonEmpty(message["id"]) { return id }
            }
        }
        return nil
    }

    static func nonEmpty(_ value: JSONValue?) -> String? {
        guard let text = value?.stringValue, !text.isEmpty else { return nil }
        return text
    }

    /// The title a chat JSON names, as the real server derives the column.
    static func title(_ chat: [String: JSONValue]) -> String {
        switch chat["title"] {
        case .string(let title)?: return title
        case nil: return "New Chat"
        case let other?: return other.jsonText
        }
    }

    /// Merges a client's chat JSON into the stored one, the way the real server does: top-level keys are
    /// replaced, but `history.messages` is a union, so a writer holding an older copy never removes messages
    /// that were saved since it read. Stored messages another user wrote, and assistant messages still being
    /// generated, keep their stored form.
    static func merge(stored: [String: JSONValue], incoming: [String: JSONValue], ownerID: String) -> [String: JSONValue] {
        var updated = stored
        for (key, value) in incoming { updated[key] = value }
        guard incoming["history"] != nil else { return updated }
        let storedHistory = stored["history"]?.objectValue
        let storedMessages = storedHistory?["messages"]?.objectValue ?? [:]
        var history = mergeHistory(storedHistory, incoming["history"]?.objectValue)
        var messages = history["messages"]?.objectValue ?? [:]
        var kept = false
        for (id, value) in storedMessages {
            guard case .object(let message) = value else { continue }
            let author = nonEmpty(message["user_id"]) ?? ownerID
            let generating =
                message["role"]?.stringValue == "assistant"
                && (message["done"] == .bool(false) || messages[id]?["done"] == .bool(false))
            if author != ownerID || generating, messages[id] != value {
                messages[id] = value
                kept = true
            }
        }
        if kept {
            history["messages"] = .object(messages)
            history = mergeHistory(history, [:], previous: storedHistory)
        }
        updated["history"] = .object(history)
        return updated
    }

    /// The union of two message maps (the incoming copy of a message wins) with every `childrenIds` rebuilt
    /// from `parentId`, so the tree is consistent whatever either side held. Children keep the order the
    /// stored tree gave them, then the incoming tree's order, then creation time.
    static func mergeHistory(
        _ existing: [String: JSONValue]?, _ incoming: [String: JSONValue]?, previous: [String: JSONValue]? = nil
    ) -> [String: JSONValue] {
        let old = existing?["messages"]?.objectValue ?? [:]
        let new = incoming?["messages"]?.objectValue ?? [:]
        var merged: [String: [String: JSONValue]] = [:]
        for (id, value) in old { if case .object(let message) = value { merged[id] = message } }
        for (id, value) in new {
            if case .object(let message) = value { merged[id] = message } else { merged[id] = nil }
        }
        var children: [String: [String]] = [:]
        for (id, message) in merged {
            if let parent = message["parentId"]?.stringValue, merged[parent] != nil, parent != id {
                children[parent, default: []].append(id)
            }
        }
        func rank(_ list: JSONValue?) -> [String: Int] {
            guard case .array(let ids)? = list else { return [:] }
            var result: [String: Int] = [:]
            for (index, id) in ids.enumerated() { if let id = id.stringValue, result[id] == nil { result[id] = index } }
            return result
        }
        var result: [String: JSONValue] = [:]
        for (id, message) in merged {
            let ids = children[id] ?? []
            var ordered = ids
            if ids.count > 1 {
                let first = rank((previous?["messages"] ?? existing?["messages"])?[id]?["childrenIds"])
                let second = rank(new[id]?["childrenIds"])
                ordered = ids.sorted { a, b in
                    let key = { (x: String) -> (Int, Int, Double, String) in
                        (
                            first[x] ?? Int.max, second[x] ?? Int.max,
                            Self.number(merged[x]?["timestamp"]) ?? .greatestFiniteMagnitude, x
                        )
                    }
                    return key(a) < key(b)
                }
            }
            var message = message
            message["childrenIds"] = .array(ordered.map(JSONValue.string))
            result[id] = .object(message)
        }
        var currentID: JSONValue = .null
        if let id = incoming?["currentId"]?.stringValue, result[id] != nil {
            currentID = .string(id)
        } else if let id = existing?["currentId"]?.stringValue, result[id] != nil {
            currentID = .string(id)
        }
        var history = existing ?? [:]
        for (key, value) in incoming ?? [:] { history[key] = value }
        history["messages"] = .object(result)
        history["currentId"] = currentID
        return history
    }

    static func number(_ value: JSONValue?) -> Double? {
        switch value {
        case .int(let number)?: return Double(number)
        case .double(let number)?: return number
        default: return nil
        }
    }

    /// Replaces or adds one message in the history, as the message route does: fields merge into a stored
    /// message; a new message is linked under its parent, takes the opposite role of its parent and becomes
    /// the current message.
    static func upsertMessage(_ chat: inout [String: JSONValue], id: String, fields: [String: JSONValue], now: Int) {
        var history = chat["history"]?.objectValue ?? [:]
        var messages = history["messages"]?.objectValue ?? [:]
        if case .object(var message)? = messages[id] {
            for (key, value) in fields { message[key] = value }
            messages[id] = .object(message)
        } else {
            var parentID = fields["parentId"]?.stringValue
            if parentID == nil {
                parentID = messages.first { _, value in
                    if case .array(let ids)? = value["childrenIds"] { return ids.contains(.string(id)) }
                    return false
                }?.key
            }
            var message = fields
            message["id"] = .string(id)
            message["parentId"] = parentID.map(JSONValue.string) ?? .null
            message["childrenIds"] = .array([])
            if message["role"] == nil {
                let parentRole = parentID.flatMap { messages[$0]?["role"]?.stringValue }
                message["role"] = .string(parentRole == "assistant" ? "user" : "assistant")
            }
            message["timestamp"] = message["timestamp"] ?? .int(now)
            if let parentID, case .object(var parent)? = messages[parentID] {
                var ids: [JSONValue] = []
                if case .array(let existing)? = parent["childrenIds"] { ids = existing }
                if !ids.contains(.string(id)) { ids.append(.string(id)) }
                parent["childrenIds"] = .array(ids)
                messages[parentID] = .object(parent)
            }
            messages[id] = .object(message)
            history["currentId"] = .string(id)
        }
        history["messages"] = .object(messages)
        chat["history"] = .object(history)
    }

    /// Removes a message and its direct children; grandchildren move up to the message's parent, and the
    /// current message becomes the last leaf below the parent. Returns whether anything was removed.
    static func deleteMessage(_ chat: inout [String: JSONValue], id: String) -> Bool {
        var history = chat["history"]?.objectValue ?? [:]
        var messages = history["messages"]?.objectValue ?? [:]
        guard case .object(let message)? = messages[id] else { return false }
        func childIDs(_ value: JSONValue?) -> [String] {
            guard case .array(let ids)? = value?["childrenIds"] else { return [] }
            return ids.compactMap(\.stringValue).filter { messages[$0] != nil }
        }
        let parentID = message["parentId"]?.stringValue.flatMap { messages[$0] != nil ? $0 : nil }
        let children = childIDs(.object(message))
        let grandchildren = children.flatMap { childIDs(messages[$0]) }
        if let parentID, case .object(var parent)? = messages[parentID] {
            let kept = childIDs(.object(parent)).filter { $0 != id }
            parent["childrenIds"] = .array((kept + grandchildren).map(JSONValue.string))
            messages[parentID] = .object(parent)
        }
        for grandchild in grandchildren {
            if case .object(var moved)? = messages[grandchild] {
                moved["parentId"] = parentID.map(JSONValue.string) ?? .null
                messages[grandchild] = .object(moved)
            }
        }
        for removed in [id] + children { messages[removed] = nil }
        var current = parentID
        var next: [String] =
            parentID.map { childIDs(messages[$0]) }
            ?? messages.filter { $0.value["parentId"] == nil || $0.value["parentId"] == .null }.map(\.key).sorted()
        var visited: Set<String> = []
        while let last = next.last, !visited.contains(last) {
            current = last
            visited.insert(last)
            next = childIDs(messages[last])
        }
        history["messages"] = .object(messages)
        history["currentId"] = current.flatMap { messages[$0] != nil ? JSONValue.string($0) : nil } ?? .null
        chat["history"] = .object(history)
        return true
    }

    /// The event types `applyEvent` keeps in the chat; any other type changes nothing stored.
    static let keptEvents: Set<String> = ["message", "replace", "status"]

    /// What a message event changes in the stored chat; returns whether anything changed.
    static func applyEvent(
        _ chat: inout [String: JSONValue], messageID: String, type: String, data: [String: JSONValue]
    ) -> Bool {
        let message = chat["history"]?["messages"]?[messageID]?.objectValue
        switch type {
        case "message":
            guard let message else { return false }
            let content = (message["content"]?.stringValue ?? "") + (data["content"]?.stringValue ?? "")
            upsertMessage(&chat, id: messageID, fields: ["content": .string(content)], now: 0)
        case "replace":
            upsertMessage(
                &chat, id: messageID, fields: ["content": .string(data["content"]?.stringValue ?? "")],
                now: ChatHistory.now())
        case "status":
            guard let message else { return false }
            var list: [JSONValue] = []
            if case .array(let existing)? = message["statusHistory"] { list = existing }
            list.append(.object(data))
            upsertMessage(&chat, id: messageID, fields: ["statusHistory": .array(list)], now: 0)
        default:
            return false
        }
        return true
    }

    /// Messages by `from` (or by nobody) become `to`'s, as a cloned shared chat's are.
    static func reattribute(_ chat: inout [String: JSONValue], from: String, to: String, name: String) {
        func annotate(_ message: inout [String: JSONValue]) {
            let author = nonEmpty(message["user_id"]) ?? from
            guard author == from else { return }
            message["user_id"] = .string(to)
            if message["role"]?.stringValue == "user" {
                message["user"] = .object(["id": .string(to), "name": .string(name)])
            }
        }
        forEachMessage(&chat, annotate)
    }
}
