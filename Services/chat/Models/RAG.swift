// Files and knowledge bases in a completion (`files: [{type: "file"|"collection", id}]`): retrieval finds the best
// chunks for the question, they go into the last user message inside the original's structure (numbered
// `<source>` tags in a `<context>` block after the task and its rules), and the answer carries `sources`.
import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import Shared

struct RAG: Sendable {
    let client: HTTPClient
    /// Where retrieval is (`SKIFF_RETRIEVAL_URL`).
    let baseURL: String
    let internalSecret: String

    /// Our wording of the task, in the original template's structure; `{{CONTEXT}}` is replaced.
    static let template = """
        ### Task:
        Answer the user's question using the context below, which comes from documents the user gave.

        ### Guidelines:
        - Answer in the language of the question.
        - If the context does not hold the answer, say so instead of guessing.
        - Cite a source as [id] (its `id` attribute) right after the sentence that uses it, only when the source has an id.
        - Do not cite sources that have no id, and do not make ids up.
        - Keep the answer focused on the question.

        ### Example of Citation:
        If the user asks about a topic and source [1] covers it: "The topic works this way [1]."

        ### Output:
        A clear, direct answer to the question, with citations where they apply.

        <context>
        {{CONTEXT}}
        </context>

        """

    /// The items retrieval handles (others are left for later), at most `maxItems`: each is a search.
    static func items(_ body: [String: JSONValue]) -> [JSONValue] {
        Array(
            (body["files"]?.arrayValue ?? []).filter { ["file", "collection"].contains($0["type"]?.stringValue ?? "") && $0["id"] != nil }
                .prefix(maxItems))
    }

    static let maxItems = 100

    static func lastUserText(_ messages: [JSONValue]) -> String {
        guard let message = messages.last(where: { $0["role"]?.stringValue == "user" }) else { return "" }
        if let text = message["content"]?.stringValue { return text }
        return (message["content"]?.arrayValue ?? []).compactMap { $0["text"]?.stringValue }.joined(separator: "\n")
    }

    /// The sources, or none when retrieval fails (the question then goes without them, as the original goes on).
    func sourcesOrNone(for body: [String: JSONValue], user: Identity) async -> (text: String, value: [JSONValue])? {
        do {
            return try await sources(for: body, user: user)
        } catch {
            return nil
        }
    }

    /// The sources for the body's files (JSON text of the array), or nil when there are none.
    func sources(for body: [String: JSONValue], user: Identity) async throws -> (text: String, value: [JSONValue])? {
        let items = Self.items(body)
        guard !items.isEmpty else { return nil }
        var request = HTTPClientRequest(url: baseURL + "/internal/retrieval/sources")
        request.method = .POST
        InternalHeader.add(user, secret: internalSecret, to: &request.headers)
        request.headers.add(name: "Content-Type", value: "application/json")
        let query = Self.lastUserText(body["messages"]?.arrayValue ?? [])
        request.body = .bytes(ByteBuffer(string: JSONValue.object(["items": .array(items), "query": .string(query)]).jsonText))
        let (response, data) = try await BaseModelCache.fetch(request, client: client, timeout: .seconds(60), limit: 64 << 20)
        guard response.status == .ok else { throw APIError(.badRequest, "The documents could not be searched.") }
        let text = String(buffer: data)
        guard let value = JSONValue.parse(text)?.arrayValue, !value.isEmpty else { return nil }
        return (text, value)
    }

    /// The `<source>` tags: one per chunk, numbered by source (a file's chunks share its number).
    static func context(_ sources: [JSONValue]) -> String {
        var numbers: [String: Int] = [:]
        var text = ""
        for source in sources {
            let item = source["source"]
            let documents = source["document"]?.arrayValue ?? []
            let metadatas = source["metadata"]?.arrayValue ?? []
            for (index, document) in documents.enumerated() {
                let meta = index < metadatas.count ? metadatas[index] : .null
                let sid = meta["source"]?.stringValue ?? item?["id"]?.stringValue ?? "N/A"
                let number = numbers[sid] ?? (numbers.count + 1)
                numbers[sid] = number
                var tag = "<source id=\"\(number)\""
                if let name = item?["name"]?.stringValue { tag += " name=\"\(name)\"" }
                if let type = item?["type"]?.stringValue, type != "text" {
                    tag += " resource-type=\"\(type)\" resource-id=\"\(item?["id"]?.stringValue ?? "")\""
                }
                text += tag + ">" + (document.stringValue ?? "") + "</source>\n"
            }
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The body with the context put in front of the last user message (a new user message when the last is not).
    static func apply(_ sources: [JSONValue], to body: inout [String: JSONValue]) {
        let context = context(sources)
        guard !context.isEmpty else { return }
        let prompt = template.replacingOccurrences(of: "{{CONTEXT}}", with: context)
        var messages = body["messages"]?.arrayValue ?? []
        if var last = messages.last?.objectValue, last["role"]?.stringValue == "user" {
            switch last["content"] {
            case .string(let text):
                last["content"] = .string(prompt + "\n" + text)
            case .array(let parts):
                last["content"] = .array(parts.map { part in
                    guard var object = part.objectValue, let text = object["text"]?.stringValue else { return part }
                    object["text"] = .string(prompt + "\n" + text)
                    return .object(object)
                })
            default:
                last["content"] = .string(prompt)
            }
            messages[messages.count - 1] = .object(last)
        } else {
            messages.append(.object(["role": .string("user"), "content": .string(prompt)]))
        }
        body["messages"] = .array(messages)
    }
}
