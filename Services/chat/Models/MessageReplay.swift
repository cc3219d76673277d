// The conversation a completion sends, rebuilt as the original does. The web app sends no history for a stored
// chat (at most its system prompt): the chain from the first message down to the user's message is read back
// from the chat, and every message loses Open WebUI's own keys before it reaches a provider.
import Foundation
import Shared

enum MessageReplay {
    /// The keys of a stored message that are read back; the others (tree links, timestamps, authors) never
    /// count.
    static let storedKeys: Set<String> = ["id", "role", "content", "output", "files", "contextSummary", "usage", "model", "meta"]

    /// Keys of Open WebUI's own on a message; a provider never sees them.
    static let ownKeys = ["id", "output", "model", "contextSummary", "context_summary", "usage", "meta", "files"]

    /// The messages a completion sends: for a turn of a stored chat (`chat`, already holding the user's message),
    /// the request's system message and then the chain read back from the chat, with the reply being revised
    /// after it (guided regeneration); otherwise the request's own. The guidance of a guided regeneration goes
    /// last as a user message, and Open WebUI's keys come out. Nil when the request has no messages and none
    /// were read back.
    static func messages(for body: [String: JSONValue], chat: [String: JSONValue]? = nil) -> [JSONValue]? {
        var messages = body["messages"]?.arrayValue
        let userMessage = body["user_message"]?.objectValue ?? body["parent_message"]?.objectValue
        if let stored = chat?["history"]?["messages"]?.objectValue, let id = userMessage?["id"]?.stringValue {
            var chain = Self.chain(stored, upTo: id)
            if !chain.isEmpty {
                if let revised = body["regeneration_message_id"]?.stringValue.flatMap({ stored[$0]?.objectValue }),
                    isSet(revised["content"]) || isSet(revised["output"])
                {
                    chain.append(.object(revised.filter { storedKeys.contains($0.key) }))
                }
                messages = conversation(request: messages ?? [], chain: chain)
            }
        }
        if let guidance = body["regeneration_prompt"], isSet(guidance) {
            messages = (messages ?? []) + [.object(["role": .string("user"), "content": guidance])]
        }
        return messages.map(forProvider)
    }

    /// The stored messages from the root of `messages` (a chat's `history.messages`) down to `id`, each with
    /// only the keys that are read back. Answers with neither content nor output (still running, or failed)
    /// are left out. Empty when `id` is not in the chat.
    static func chain(_ messages: [String: JSONValue], upTo id: String) -> [JSONValue] {
        var chain: [JSONValue] = []
        var seen: Set<String> = []
        var next: String? = id
        while let current = next, seen.insert(current).inserted, let message = messages[current]?.objectValue {
            if let replayed = replayed(message) { chain.append(.object(replayed)) }
            next = message["parentId"]?.stringValue
        }
        return chain.reversed()
    }

    /// One stored message as it is read back, or nil for an answer that has nothing to say.
    static func replayed(_ message: [String: JSONValue]) -> [String: JSONValue]? {
        if message["role"]?.stringValue == "assistant", !isSet(message["content"]), !isSet(message["output"]) { return nil }
        return message.filter { storedKeys.contains($0.key) }
    }

    /// A stored chat's turn: the first system message of the request (the web app's system prompt) in front of
    /// the chain; images attached to a user message go into its content as `image_url` parts.
    static func conversation(request: [JSONValue], chain: [JSONValue]) -> [JSONValue] {
        let system = request.first { $0["role"]?.stringValue == "system" }
        return (system.map { [$0] } ?? []) + chain.map(withImages)
    }

    static func withImages(_ value: JSONValue) -> JSONValue {
        guard var message = value.objectValue, message["role"]?.stringValue == "user" else { return value }
        let images = (message["files"]?.arrayValue ?? []).filter { file in
            file["type"]?.stringValue == "image" || isRasterImage(file["content_type"]?.stringValue)
        }
        guard !images.isEmpty, case .string(let text) = message["content"] ?? .string("") else { return value }
        // Data and web URLs as they are; an uploaded image (its file id) for `ImageInliner` to turn into a data
        // URL; anything else is left out (the provider would refuse it, and every later turn with it).
        let parts = images.compactMap { file -> JSONValue? in
            guard let url = file["url"]?.stringValue,
                url.hasPrefix("data:image/") || url.hasPrefix("https://") || url.hasPrefix("http://")
                    || ImageInliner.fileID(url) != nil
            else { return nil }
            return .object(["type": .string("image_url"), "image_url": .object(["url": .string(url)])])
        }
        guard !parts.isEmpty else { return value }
        message["content"] = .array([.object(["type": .string("text"), "text": .string(text)])] + parts)
        return .object(message)
    }

    /// An image type a provider can decode (SVG is XML, not a bitmap).
    static func isRasterImage(_ contentType: String?) -> Bool {
        let base = (contentType ?? "").split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        return base.hasPrefix("image/") && base != "image/svg+xml"
    }

    /// What a provider gets of each message: an answer saved with output items becomes the assistant message
    /// their text spells; every other message loses Open WebUI's keys and its files.
    static func forProvider(_ messages: [JSONValue]) -> [JSONValue] {
        var result: [JSONValue] = []
        for value in messages {
            guard var message = value.objectValue else {
                result.append(value)
                continue
            }
            if message["role"]?.stringValue == "assistant", isSet(message["output"]) {
                if let text = outputText(message["output"]) {
                    result.append(.object(["role": .string("assistant"), "content": .string(text)]))
                    continue
                }
                if !isSet(message["content"]) { continue }
            }
            for key in ownKeys { message[key] = nil }
            result.append(.object(message))
        }
        return result
    }

    /// The text of an answer's `message` output items (one line each), nil when they hold none.
    static func outputText(_ output: JSONValue?) -> String? {
        let texts = (output?.arrayValue ?? []).compactMap { item -> String? in
            guard item["type"]?.stringValue == "message" else { return nil }
            let text = (item["content"]?.arrayValue ?? []).compactMap { part in
                part["type"]?.stringValue == "output_text" ? part["text"]?.stringValue : nil
            }.joined()
            return text.isEmpty ? nil : text
        }
        return texts.isEmpty ? nil : texts.joined(separator: "\n")
    }

    /// Whether a value counts as given: not missing, null, false, zero or empty.
    static func isSet(_ value: JSONValue?) -> Bool {
        switch value {
        case nil, .null?: return false
        case .bool(let flag)?: return flag
        case .int(let number)?: return number != 0
        case .double(let number)?: return number != 0
        case .string(let text)?: return !text.isEmpty
        case .array(let items)?: return !items.isEmpty
        case .object(let fields)?: return !fields.isEmpty
        }
    }
}
