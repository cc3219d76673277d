// Turning a client's completion body into the provider's: Open WebUI's own keys taken out, a custom model's
// params and system prompt applied, the model id the provider knows, and Ollama's format where it is Ollama.
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Shared

/// A request ready to go to one provider.
struct ProviderRequest: Sendable {
    var url: String
    var authorization: String?
    var body: [String: JSONValue]
    var ollama: Bool
    var stream: Bool
    /// The model id the client asked for (usage is counted against it).
    var requestedModel: String

    /// Keys of Open WebUI's own that never reach a provider.
    static let internalKeys: Set<String> = [
        "model_item", "background_tasks", "parent_id", "new_chat", "message_ids", "id", "user_message", "parent_message",
        "chat_id", "chat_variables", "tool_servers", "automation_id", "assistant_message_id", "regeneration_message_id",
        "session_id", "folder_id", "filter_ids", "params", "regeneration_prompt", "variables", "features", "tool_ids",
        "terminal_id", "files", "skill_ids", "metadata",
    ]

    /// Params that configure Open WebUI itself rather than the model.
    static let internalParams: Set<String> = [
        "stream_response", "stream_delta_chunk_size", "function_calling", "reasoning_tags", "compact_token_threshold",
        "system", "note_id", "tool_approval_mode", "model_controls",
    ]

    /// The params that apply: the custom model's, then the request's own over them (nulls in the request ignored).
    static func params(model: [String: JSONValue]?, request: JSONValue?) -> [String: JSONValue] {
        var merged = model ?? [:]
        merged["model_controls"] = nil
        for (key, value) in request?.objectValue ?? [:] where value != .null && key != "model_controls" {
            if key == "custom_params", let old = merged[key] {
                merged[key] = old.merging(value)
            } else {
                merged[key] = value
            }
        }
        var result = merged.filter { !internalParams.contains($0.key) && $0.value != .null }
        if let custom = result.removeValue(forKey: "custom_params")?.objectValue {
            for (key, value) in custom {
                var parsed = value
                if let text = value.stringValue, let json = JSONValue.parse(text) { parsed = json }
                result[key] = result[key].map { $0.merging(parsed) } ?? parsed
            }
        }
        return result
    }

    static let floatParams: Set<String> = ["temperature", "top_p", "min_p", "frequency_penalty", "presence_penalty"]

    static let openAIDisabled = APIError(.serviceUnavailable, "OpenAI API is disabled")
    static let ollamaDisabled = APIError(.serviceUnavailable, "The Ollama API is disabled. Please enable it to use this feature.")

    /// Throws what `make` would for a model whose connection is switched off or gone, so task mode can refuse
    /// before it stores anything.
    static func checkConnection(_ base: BaseModel, settings: ProviderSettings) throws {
        switch base.source {
        case .openAI(let index):
            guard settings.enableOpenAI == true, index < settings.openAI.count else { throw openAIDisabled }
        case .ollama(let indexes):
            guard settings.enableOllama == true, !indexes.isEmpty, indexes.allSatisfy({ $0 < settings.ollama.count }) else {
                throw ollamaDisabled
            }
        }
    }

    /// Builds the provider request for `body` sent to `entry`, which resolves to `base`.
    static func make(
        body original: [String: JSONValue], entry: ModelEntry, base: BaseModel, settings: ProviderSettings, user: Identity,
        now: Date = Date(), keeping: Set<String> = []
    ) throws -> ProviderRequest {
        // `/openai/chat/completions` forwards the client's keys (`keeping`); the others drop Open WebUI's own.
        var body = original.filter { !internalKeys.contains($0.key) || keeping.contains($0.key) }
        let custom = entry.custom
        let params = Self.params(model: custom?.params, request: keeping.contains("params") ? nil : original["params"])
        let system = custom?.params["system"]?.stringValue.map {
            SystemPrompt.render($0, user: user, variables: original["variables"]?.objectValue ?? [:], now: now)
        }
        if let system, !system.isEmpty, var messages = body["messages"]?.arrayValue {
            SystemPrompt.prepend(system, to: &messages)
            body["messages"] = .array(messages)
        }
        let stream = body["stream"]?.boolValue ?? false
        try checkConnection(base, settings: settings)
        switch base.source {
        case .openAI(let index):
            let connection = settings.openAI[index]
            for (key, value) in params where body[key] == nil {
                if floatParams.contains(key), let number = value.doubleValue {
                    body[key] = .double(number)
                } else if key == "max_tokens", let number = value.intValue {
                    body[key] = .int(number)
                } else {
                    body[key] = value
                }
            }
            body["model"] = .string(strip(prefix: connection.prefixID, from: base.id))
            if !connection.url.contains("api.openai.com"), let tokens = body.removeValue(forKey: "max_completion_tokens") {
                if body["max_tokens"] == nil { body["max_tokens"] = tokens }
            }
            if !stream { body["stream_options"] = nil }
            return ProviderRequest(
                url: connection.url + "/chat/completions", authorization: connection.authorization, body: body, ollama: false,
                stream: stream, requestedModel: entry.id)
        case .ollama(let indexes):
            guard let index = indexes.randomElement() else { throw ollamaDisabled }
            let connection = settings.ollama[index]
            var options = body["options"]?.objectValue ?? [:]
            for (key, value) in params where options[key] == nil { options[key] = value }
            if !options.isEmpty { body["options"] = .object(options) }
            var converted = OllamaFormat.request(from: body)
            converted["model"] = .string(strip(prefix: connection.prefixID, from: base.id))
            return ProviderRequest(
                url: connection.url + "/api/chat", authorization: connection.authorization, body: converted, ollama: true,
                stream: stream, requestedModel: entry.id)
        }
    }

    static func strip(prefix: String?, from id: String) -> String {
        guard let prefix, id.hasPrefix(prefix + ".") else { return id }
        return String(id.dropFirst(prefix.count + 1))
    }

    func httpRequest() -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let authorization { request.headers.add(name: "Authorization", value: authorization) }
        let text = JSONValue.object(body).jsonText
        request.body = .bytes(ByteBuffer(string: text))
        return request
    }
}

/// A custom model's system prompt: its template variables filled in, put in front of the conversation.
enum SystemPrompt {
    static func render(_ template: String, user: Identity, variables: [String: JSONValue], now: Date) -> String {
        var text = template
        for (key, value) in variables {
            text = text.replacingOccurrences(of: key, with: value.stringValue ?? value.jsonText)
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        func format(_ pattern: String) -> String {
            formatter.dateFormat = pattern
            return formatter.string(from: now)
        }
        let date = format("yyyy-MM-dd")
        let time = format("hh:mm:ss a")
        let replacements: [(String, String)] = [
            ("{{CURRENT_DATETIME}}", date + " " + time), ("{{CURRENT_DATE}}", date), ("{{CURRENT_TIME}}", time),
            ("{{CURRENT_WEEKDAY}}", format("EEEE")), ("{{USER_NAME}}", user.name.isEmpty ? "None" : user.name),
            ("{{USER_EMAIL}}", user.email.isEmpty ? "None" : user.email),
        ]
        for (key, value) in replacements { text = text.replacingOccurrences(of: key, with: value) }
        return text
    }

    /// Prepended to the first message when it is a system message (`"<system>\n<existing>"`), else a new
    /// system message goes first.
    static func prepend(_ system: String, to messages: inout [JSONValue]) {
        if var first = messages.first?.objectValue, first["role"]?.stringValue == "system" {
            switch first["content"] {
            case .string(let existing):
                first["content"] = .string(system + "\n" + existing)
            case .array(let parts):
                first["content"] = .array(parts.map { part in
                    guard var object = part.objectValue, let text = object["text"]?.stringValue else { return part }
                    object["text"] = .string(system + "\n" + text)
                    return .object(object)
                })
            default:
                first["content"] = .string(system)
            }
            messages[0] = .object(first)
        } else {
            messages.insert(.object(["role": .string("system"), "content": .string(system)]), at: 0)
        }
    }
}

/// Ollama's chat format to and from OpenAI's.
enum OllamaFormat {
    static func request(from body: [String: JSONValue]) -> [String: JSONValue] {
        var result: [String: JSONValue] = ["model": body["model"] ?? .null, "stream": .bool(body["stream"]?.boolValue ?? false)]
        result["messages"] = .array((body["messages"]?.arrayValue ?? []).map(message))
        if let tools = body["tools"] { result["tools"] = tools }
        var options = body["options"]?.objectValue ?? [:]
        for key in ["format", "keep_alive", "think", "system"] {
            if let value = options.removeValue(forKey: key) {
                result[key] = value.stringValue.flatMap(JSONValue.parse) ?? value
            }
        }
        if let tokens = options.removeValue(forKey: "max_tokens") { options["num_predict"] = tokens }
        if let stop = body["stop"] { options["stop"] = stop }
        if let tokens = body["max_tokens"] { options["num_predict"] = tokens }
        if !options.isEmpty { result["options"] = .object(options) }
        if let format = body["response_format"]?.objectValue, let type = format["type"]?.stringValue,
            let schema = format[type]?["schema"]
        {
            result["format"] = schema
        }
        return result
    }

    static func message(_ value: JSONValue) -> JSONValue {
        guard let message = value.objectValue else { return value }
        var result: [String: JSONValue] = ["role": message["role"] ?? .string("user")]
        if let thinking = message["thinking"] ?? message["reasoning_content"] ?? message["reasoning"] { result["thinking"] = thinking }
        if let calls = message["tool_calls"]?.arrayValue {
            result["content"] = .string("")
            result["tool_calls"] = .array(calls.map { call in
                let function = call["function"]
                let arguments = function?["arguments"]?.stringValue.flatMap(JSONValue.parse) ?? .object([:])
                return .object([
                    "index": call["index"] ?? .int(0), "id": call["id"] ?? .null,
                    "function": .object(["name": function?["name"] ?? .null, "arguments": arguments]),
                ])
            })
        } else if case .array(let parts) = message["content"] {
            let text = parts.compactMap { $0["type"]?.stringValue == "text" ? $0["text"]?.stringValue : nil }
                .joined().trimmingCharacters(in: .whitespacesAndNewlines)
            if !text.isEmpty { result["content"] = .string(text) }
            let images = parts.compactMap { part -> JSONValue? in
                guard part["type"]?.stringValue == "image_url", let url = part["image_url"]?["url"]?.stringValue else { return nil }
                return .string(url.hasPrefix("data:") ? String(url.split(separator: ",").last ?? "") : url)
            }
            if !images.isEmpty { result["images"] = .array(images) }
        } else {
            result["content"] = message["content"] ?? .string("")
            if let id = message["tool_call_id"] { result["tool_call_id"] = id }
        }
        return .object(result)
    }

    /// OpenAI usage (with Ollama's own counters) from a final Ollama line.
    static func usage(_ line: JSONValue) -> OrderedObject {
        let input = line["prompt_eval_count"]?.intValue ?? 0
        let output = line["eval_count"]?.intValue ?? 0
        func rate(_ count: String, _ duration: String) -> JSONValue {
            let n = line[count]?.doubleValue ?? 0
            let d = line[duration]?.doubleValue ?? 0
            return d > 0 ? .double((n / d * 1e9 * 100).rounded() / 100) : .string("N/A")
        }
        let total = (line["total_duration"]?.intValue ?? 0) / 1_000_000_000
        return OrderedObject([
            ("input_tokens", .int(input)), ("output_tokens", .int(output)), ("total_tokens", .int(input &+ output)),
            ("prompt_tokens", .int(input)), ("completion_tokens", .int(output)),
            ("response_token/s", rate("eval_count", "eval_duration")), ("prompt_token/s", rate("prompt_eval_count", "prompt_eval_duration")),
            ("total_duration", line["total_duration"] ?? .int(0)), ("load_duration", line["load_duration"] ?? .int(0)),
            ("prompt_eval_count", .int(input)), ("prompt_eval_duration", line["prompt_eval_duration"] ?? .int(0)),
            ("eval_count", .int(output)), ("eval_duration", line["eval_duration"] ?? .int(0)),
            ("approximate_total", .string("\(total / 3600)h\(total % 3600 / 60)m\(total % 60)s")),
            ("completion_tokens_details", .object([
                "reasoning_tokens": .int(0), "accepted_prediction_tokens": .int(0), "rejected_prediction_tokens": .int(0),
            ])),
        ])
    }

    static func toolCalls(_ calls: [JSONValue]) -> JSONValue {
        .array(calls.map { call in
            let function = call["function"]
            let arguments = function?["arguments"].map { $0.stringValue ?? $0.jsonText } ?? "{}"
            return .object([
                "index": call["index"] ?? function?["index"] ?? .int(0),
                "id": call["id"] ?? .string("call_" + UUID().uuidString.lowercased()), "type": .string("function"),
                "function": .object(["name": function?["name"] ?? .null, "arguments": .string(arguments)]),
            ])
        })
    }

    /// A whole Ollama answer as an OpenAI `chat.completion`.
    static func completion(_ answer: JSONValue) -> String {
        let model = answer["model"]?.stringValue ?? "ollama"
        var message = OrderedObject([("role", .string("assistant")), ("content", .string(answer["message"]?["content"]?.stringValue ?? ""))])
        if let thinking = answer["message"]?["thinking"]?.stringValue, !thinking.isEmpty { message["reasoning_content"] = .string(thinking) }
        let calls = answer["message"]?["tool_calls"]?.arrayValue ?? []
        if !calls.isEmpty { message["tool_calls"] = toolCalls(calls) }
        let finish = calls.isEmpty ? (answer["done_reason"]?.stringValue ?? "stop") : "tool_calls"
        var choice = OrderedObject([("index", .int(0)), ("logprobs", .null), ("finish_reason", .string(finish))])
        choice.set("message", ordered: message)
        var object = OrderedObject([
            ("id", .string(model + "-" + UUID().uuidString.lowercased())), ("created", .int(Int(Date().timeIntervalSince1970))),
            ("model", .string(model)),
        ])
        object.set("choices", .list([choice]))
        object["object"] = .string("chat.completion")
        object.set("usage", ordered: usage(answer))
        return object.text
    }

    /// Turns Ollama's stream lines into OpenAI chunks, one completion id for all.
    struct StreamConverter {
        let id = "chatcmpl-" + UUID().uuidString.lowercased()
        var first = true
        var sawToolCalls = false

        /// The `data: ...` SSE event for one Ollama line (nil for a line that is not JSON).
        mutating func chunk(for line: JSONValue) -> (text: String, usage: OrderedObject?)? {
            guard line.objectValue != nil else { return nil }
            var delta = OrderedObject()
            let content = line["message"]?["content"]?.stringValue ?? ""
            if !content.isEmpty { delta["content"] = .string(content) }
            if let thinking = line["message"]?["thinking"]?.stringValue, !thinking.isEmpty {
                delta["reasoning_content"] = .string(thinking)
            }
            if let calls = line["message"]?["tool_calls"]?.arrayValue, !calls.isEmpty {
                delta["tool_calls"] = toolCalls(calls)
                sawToolCalls = true
            }
            var finish: JSONValue = delta.pairs.isEmpty ? .string("stop") : .null
            let done = line["done"]?.boolValue ?? false
            if done && sawToolCalls {
                finish = .string("tool_calls")
            } else if let reason = line["done_reason"]?.stringValue {
                finish = .string(reason)
            }
            if first {
                delta["role"] = .string("assistant")
                first = false
            }
            var choice = OrderedObject([("index", .int(0)), ("logprobs", .null), ("finish_reason", finish)])
            choice.set("delta", ordered: delta)
            let usage = done ? usage(line) : nil
            var text = "{\"id\":" + JSONValue.string(id).jsonText + ",\"created\":\(Int(Date().timeIntervalSince1970)),\"model\":"
                + JSONValue.string(line["model"]?.stringValue ?? "ollama").jsonText + ",\"choices\":[" + choice.text
                + "],\"object\":\"chat.completion.chunk\""
            if let usage { text += ",\"usage\":" + usage.text }
            return ("data: " + text + "}\n\n", usage)
        }
    }
}
