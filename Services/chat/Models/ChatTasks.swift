// Task mode: a completion for a socket client runs in the background. The chat is created (first message) or
// continued, the answer streams to the user's sockets as `events` through realtime, is saved into the chat when
// it ends, and a title (and follow-ups, tags) follow. Running tasks are listed in Redis, so any replica can list
// or stop them; each task's events are also kept in a Redis stream for a while, so a client that reconnects
// catches up (`GET /api/tasks/{id}/events?after=`).
import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PostgresNIO
import ServiceLifecycle
import Shared

final class ChatTasks: Sendable {
    let history: ChatHistory
    let relay: ProviderRelay
    let registry: ModelRegistry
    let rag: RAG
    let images: ImageInliner
    let redis: RedisClient
    let logger: Logger
    /// `TASK_MODEL` (for local models) and `TASK_MODEL_EXTERNAL` (others): what writes titles; the chat's model
    /// when unset or unknown.
    let taskModel: String?
    let taskModelExternal: String?
    private let running = NIOLockedValueBox<[String: Task<Void, Never>]>([:])

    /// Sorted set of running task ids scored by when their entry lapses (a replica that died leaves its tasks
    /// listed for at most that long).
    static let tasksKey = "skiff:tasks"
    static let stopChannel = "skiff:tasks:stop"
    static let lease = 3600
    /// Seconds a finished task's events stay readable.
    static let eventsKept = 300
    static func chatKey(_ chatID: String) -> String { "skiff:tasks:chat:" + chatID }
    static func infoKey(_ taskID: String) -> String { "skiff:task:" + taskID }
    static func eventsKey(_ taskID: String) -> String { "skiff:task:" + taskID + ":events" }

    init(
        history: ChatHistory, relay: ProviderRelay, registry: ModelRegistry, rag: RAG, images: ImageInliner, redis: RedisClient,
        logger: Logger,
        taskModel: String?, taskModelExternal: String?
    ) {
        self.history = history
        self.relay = relay
        self.registry = registry
        self.rag = rag
        self.images = images
        self.redis = redis
        self.logger = logger
        self.taskModel = taskModel
        self.taskModelExternal = taskModelExternal
    }

    static let invalidID = APIError(.conflict, "Message already exists or has an invalid ID.")

    /// Creates or continues the chat, starts the task and answers `{status, task_ids, chat_id}` at once. The
    /// provider gets the conversation read back from the chat once it holds the user's message (the web app
    /// sends none), with the documents' context for its last question.
    func start(
        body: [String: JSONValue], entry: ModelEntry, base: BaseModel, settings: ProviderSettings, user: Identity, session: String
    ) async throws -> Response {
        let existing = body["chat_id"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        let chatID = existing ?? UUID().uuidString.lowercased()
        let userMessage = body["user_message"]?.objectValue ?? body["parent_message"]?.objectValue
        let userMessageID = userMessage?["id"]?.stringValue
        guard let messageID = body["id"]?.stringValue, !messageID.isEmpty else {
            if existing != nil { throw Self.invalidID }
            return Self.accepted([], chatID: chatID)
        }
        try ProviderRequest.checkConnection(base, settings: settings)
        let taskID = UUID().uuidString.lowercased()
        let now = ChatHistory.now()
        let model = entry.id
        var assistant: [String: JSONValue] = [
            "parentId": userMessageID.map(JSONValue.string) ?? .null, "role": .string("assistant"), "content": .string(""),
            "done": .bool(false), "model": .string(model), "timestamp": .int(now), "user_id": .string(user.userID),
            "modelIdx": body["model_item"]?["modelIdx"] ?? .null, "meta": .object(["task_id": .string(taskID)]),
        ]
        var folderID: String?
        let messages: [JSONValue]?
        if existing == nil {
            var chat: [String: JSONValue] = [
                "id": .string(chatID), "title": .string("New Chat"), "models": .array([.string(model)]), "files": .array([]),
                "tags": .array([]), "timestamp": .int(now * 1000), "history": .object(["messages": .object([:])]),
                "messages": .array(userMessage.map { [.object(["role": .string("user"), "content": $0["content"] ?? .string("")])] } ?? []),
            ]
            if var message = userMessage, let id = userMessageID {
                message["role"] = .string("user")
                message["user_id"] = .string(user.userID)
                message["user"] = .object(["id": .string(user.userID), "name": .string(user.name)])
                message["timestamp"] = message["timestamp"] ?? .int(now)
                ChatDocument.upsertMessage(&chat, id: id, fields: message, now: now)
            }
            ChatDocument.upsertMessage(&chat, id: messageID, fields: assistant, now: now)
            messages = MessageReplay.messages(for: body, chat: chat)
            folderID = body["folder_id"]?.stringValue
            if let folder = folderID {
                let owned = try await history.transaction { connection in
                    try await history.folders.exists(id: folder, userID: user.userID, on: connection)
                }
                guard owned else { throw APIError.notFound }
            }
            let row = ChatRow(
                id: chatID, userID: user.userID, title: "New Chat", chat: chat, meta: [:], variables: nil, folderID: folderID,
                pinned: false, archived: false, shareID: nil, currentMessageID: messageID, createdAt: now, updatedAt: now)
            _ = try await history.create(row, actor: user.userID, lastReadAt: now)
        } else {
            (folderID, messages) = try await history.transaction { connection -> (String?, [JSONValue]?) in
                guard var row = try await history.chats.lock(id: chatID, userID: user.userID, document: true, on: connection) else {
                    throw APIError.notFound
                }
                let messages = row.chat["history"]?["messages"]?.objectValue ?? [:]
                guard messages[messageID] == nil else { throw Self.invalidID }
                if var message = userMessage, let id = userMessageID, messages[id] == nil {
                    message["role"] = .string("user")
                    message["user_id"] = .string(user.userID)
                    message["user"] = .object(["id": .string(user.userID), "name": .string(user.name)])
                    message["timestamp"] = .int(now)
                    ChatDocument.upsertMessage(&row.chat, id: id, fields: message, now: now)
                }
                assistant["parentId"] = userMessageID.map(JSONValue.string) ?? .null
                ChatDocument.upsertMessage(&row.chat, id: messageID, fields: assistant, now: now)
                row.chat["models"] = userMessage?["models"] ?? .array([.string(model)])
                row.currentMessageID = messageID
                row.updatedAt = now
                try await history.chats.save(row, answering: false, on: connection)
                try await history.publishChat("chat.updated", chatID: chatID, ownerID: user.userID, actor: user.userID, on: connection)
                return (row.folderID, MessageReplay.messages(for: body, chat: row.chat))
            }
        }
        var request = body
        if let messages { request["messages"] = .array(await images.inline(messages, user: user)) }
        let sources = await rag.sourcesOrNone(for: request, user: user)
        if let sources { RAG.apply(sources.value, to: &request) }
        let prepared = try ProviderRequest.make(body: request, entry: entry, base: base, settings: settings, user: user)
        let emitter = TaskEmitter(
            bus: history.realtime, redis: redis, logger: logger, userID: user.userID, chatID: chatID, messageID: messageID,
            taskID: taskID)
        let expiry = String(now + Self.lease)
        _ = try? await redis.send(["ZADD", Self.tasksKey, expiry, taskID])
        _ = try? await redis.send(["ZADD", Self.chatKey(chatID), expiry, taskID])
        _ = try? await redis.send([
            "SET", Self.infoKey(taskID),
            OrderedJSON.object(["chat_id": .string(chatID), "user_id": .string(user.userID), "message_id": .string(messageID)]),
            "EX", String(Self.lease),
        ])
        let folder: JSONValue = folderID.map(JSONValue.string) ?? .null
        await emitter.emit("chat:list", .object(["chat_id": .string(chatID), "folder_id": folder]), messageID: userMessageID.map(JSONValue.string) ?? .null)
        await emitter.emit("chat:active", .object(["active": .bool(true), "folder_id": folder]))
        let job = Job(
            prepared: prepared, entry: entry, user: user, emitter: emitter, folder: folder,
            backgroundTasks: body["background_tasks"]?.objectValue ?? [:], userMessageID: userMessageID, sources: sources?.text)
        // Registered before it can run, so a stop that comes at once finds it and its end finds the entry.
        running.withLockedValue { $0[taskID] = Task { await self.run(job) } }
        return Self.accepted([taskID], chatID: chatID)
    }

    static func accepted(_ taskIDs: [String], chatID: String) -> Response {
        JSONResponse.text(OrderedJSON.object([
            ("status", .bool(true)), ("task_ids", .array(taskIDs.map(JSONValue.string))), ("chat_id", .string(chatID)),
        ]))
    }

    struct Job: Sendable {
        var prepared: ProviderRequest
        var entry: ModelEntry
        var user: Identity
        var emitter: TaskEmitter
        var folder: JSONValue
        var backgroundTasks: [String: JSONValue]
        var userMessageID: String?
        /// The retrieved sources (JSON text), sent first and kept with the answer.
        var sources: String?
    }

    /// The provider's error text as the original reads it: `error`, then `message`, then `detail`.
    static func errorDetail(_ body: ByteBuffer, status: UInt) -> String {
        guard var value = try? JSONDecoder().decode(JSONValue.self, from: body) else {
            let text = String(buffer: body)
            return text.isEmpty ? "Provider returned HTTP \(status)" : text
        }
        while case .object(let object) = value, let next = object["error"] ?? object["message"] ?? object["detail"] {
            value = next
        }
        return value.stringValue ?? value.jsonText
    }

    func run(_ job: Job) async {
        let emitter = job.emitter
        var output = TaskOutput()
        do {
            if let sources = job.sources { await emitter.emit("chat:completion", raw: "{\"sources\":" + sources + "}") }
            let response = try await relay.execute(job.prepared)
            if response.status.code >= 400 {
                let body = try await relay.collect(response)
                throw APIError(.badRequest, Self.errorDetail(body, status: response.status.code))
            }
            let contentType = response.headers.first(name: "content-type") ?? ""
            let streamed = job.prepared.ollama ? job.prepared.stream : contentType.contains("event-stream")
            if streamed {
                var lines = LineSplitter()
                var converter = OllamaFormat.StreamConverter()
                for try await chunk in response.body {
                    for line in lines.feed(chunk) {
                        let value: JSONValue?
                        if job.prepared.ollama {
                            value = JSONValue.parse(line).flatMap { converter.chunk(for: $0) }.flatMap { SSE.json(String($0.text.dropLast(2))) }
                        } else {
                            value = SSE.json(line)
                        }
                        guard let value else { continue }
                        try Task.checkCancellation()
                        await handle(chunk: value, line: line, output: &output, emitter: emitter)
                    }
                }
            } else {
                let body = try await relay.collect(response)
                let value = job.prepared.ollama
                    ? JSONValue.parse(OllamaFormat.completion((try? JSONDecoder().decode(JSONValue.self, from: body)) ?? .null))
                    : try? JSONDecoder().decode(JSONValue.self, from: body)
                guard let value else { throw APIError(.badRequest, "Provider returned an unreadable answer") }
                if let error = value["error"], value["choices"] == nil {
                    throw APIError(.badRequest, error["message"]?.stringValue ?? error.stringValue ?? error.jsonText)
                }
                await emitter.emit("chat:completion", value)
                output.text = value["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue ?? ""
                output.usage = value["usage"].map(Self.normalized)
                output.streamed = false
            }
            try Task.checkCancellation()
            try await finish(job, output: output)
        } catch {
            // The wrap-up runs in a task of its own: a stopped task's own queries would fail as cancelled.
            let stopped = error is CancellationError || Task.isCancelled
            let detail = (error as? APIError)?.detail.stringValue ?? "\(error)"
            let answer = output
            await Task {
                if stopped {
                    await self.cancelled(job, output: answer)
                } else {
                    await self.failed(job, detail: detail)
                }
            }.value
        }
        await Task { await self.end(job) }.value
    }

    /// One provider chunk: usage first, then a text delta as `response.output_text.delta`, other non-empty
    /// deltas as they came (`response:completion`), and an empty delta (the last chunk) as `chat:completion`.
    func handle(chunk: JSONValue, line: String, output: inout TaskOutput, emitter: TaskEmitter) async {
        if let usage = chunk["usage"], usage != .null {
            output.usage = Self.normalized(usage)
            await emitter.emit("chat:completion", .object(["usage": output.usage!.value]))
        }
        let choices = chunk["choices"]?.arrayValue ?? []
        if choices.isEmpty, let error = chunk["error"] {
            output.error = error["message"]?.stringValue ?? error.stringValue ?? error.jsonText
            await emitter.emit("chat:completion", .object(["error": error]))
            return
        }
        let delta = choices.first?["delta"]?.objectValue ?? [:]
        if let text = delta["content"]?.stringValue, !text.isEmpty {
            output.text += text
            await emitter.emit(
                "response:completion",
                .object([
                    "type": .string("response.output_text.delta"), "item_id": .string(output.itemID), "output_index": .int(0),
                    "content_index": .int(0), "delta": .string(text),
                ]))
        } else if !delta.isEmpty {
            await emitter.emit("response:completion", chunk)
        } else if !choices.isEmpty {
            await emitter.emit("chat:completion", chunk)
        }
    }

    /// Usage with `input_tokens`, `output_tokens` and `total_tokens` as the original adds them.
    static func normalized(_ usage: JSONValue) -> OrderedObject {
        var object = OrderedObject(usage.objectValue ?? [:], first: ["prompt_tokens", "completion_tokens", "total_tokens"])
        let input = usage["input_tokens"]?.intValue ?? usage["prompt_tokens"]?.intValue ?? usage["prompt_eval_count"]?.intValue ?? 0
        let output = usage["output_tokens"]?.intValue ?? usage["completion_tokens"]?.intValue ?? usage["eval_count"]?.intValue ?? 0
        object["input_tokens"] = .int(input)
        object["output_tokens"] = .int(output)
        if object["total_tokens"] == nil { object["total_tokens"] = .int(input &+ output) }
        return object
    }

    /// Saves the answer, then `chat:list`, `chat:completion` with `done`, and the background tasks.
    func finish(_ job: Job, output: TaskOutput) async throws {
        let emitter = job.emitter
        let item = output.item(status: "completed")
        var fields: [String: JSONValue] = [
            "done": .bool(true), "output": .array([item.value]), "content": .string(output.text.trimmingCharacters(in: .whitespacesAndNewlines)),
        ]
        if let usage = output.usage { fields["usage"] = usage.value }
        if let error = output.error { fields["error"] = .object(["content": .string(error)]) }
        if let sources = job.sources.flatMap(JSONValue.parse) { fields["sources"] = sources }
        let saved = try await save(job, fields: fields)
        relay.usage.record(user: job.user.userID, model: job.entry.id, usage: output.usage?.value)
        await emitter.emit("chat:list", .object(["chat_id": .string(emitter.chatID), "folder_id": job.folder]))
        var done = OrderedObject([("done", .bool(true))])
        done.set("output", .list([item]))
        done["title"] = .string(saved?.title ?? "New Chat")
        if output.streamed, let usage = output.usage { done.set("usage", ordered: usage) }
        await emitter.emit("chat:completion", done)
        guard let saved else { return }
        if job.backgroundTasks["follow_up_generation"]?.boolValue == true {
            let followUps = await generate(job, prompt: TaskPrompts.followUps(saved.chain), key: "follow_ups")
            let list = (followUps?.arrayValue ?? []).compactMap { $0.stringValue?.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty }.prefix(5).map { JSONValue.string(String($0.prefix(400))) }
            await emitter.emit("chat:message:follow_ups", .object(["follow_ups": .array(Array(list))]))
        }
        if job.backgroundTasks["title_generation"]?.boolValue == true {
            var title = await generate(job, prompt: TaskPrompts.title(saved.chain), key: "title")?.stringValue ?? ""
            if title.isEmpty { title = saved.chain.first?.content ?? "" }
            if !title.isEmpty {
                try? await saveTitle(title, chatID: emitter.chatID)
                await emitter.emit("chat:title", .string(title))
            }
        }
        if job.backgroundTasks["tags_generation"]?.boolValue == true,
            let tags = await generate(job, prompt: TaskPrompts.tags(saved.chain), key: "tags")?.arrayValue
        {
            await emitter.emit("chat:tags", .array(tags))
        }
    }

    struct SavedChat {
        var title: String
        /// The conversation from its first message to the answer: (role, content).
        var chain: [(role: String, content: String)]
    }

    /// Merges `fields` into the assistant message; nil when the chat is gone.
    @discardableResult
    func save(_ job: Job, fields: [String: JSONValue]) async throws -> SavedChat? {
        let emitter = job.emitter
        return try await history.transaction { connection -> SavedChat? in
            guard var row = try await history.chats.lock(id: emitter.chatID, userID: job.user.userID, document: true, on: connection)
            else { return nil }
            ChatDocument.upsertMessage(&row.chat, id: emitter.messageID, fields: fields, now: ChatHistory.now())
            row.updatedAt = ChatHistory.now()
            try await history.chats.save(row, answering: false, on: connection)
            try await history.publishChat(
                "chat.updated", chatID: row.id, ownerID: row.userID, actor: job.user.userID, on: connection)
            let messages = row.chat["history"]?["messages"]?.objectValue ?? [:]
            var chain: [(String, String)] = []
            var next: String? = emitter.messageID
            var seen: Set<String> = []
            while let id = next, seen.insert(id).inserted, let message = messages[id] {
                chain.insert((message["role"]?.stringValue ?? "", message["content"]?.stringValue ?? ""), at: 0)
                next = message["parentId"]?.stringValue
            }
            return SavedChat(title: row.title.isEmpty ? "New Chat" : row.title, chain: chain)
        }
    }

    func saveTitle(_ title: String, chatID: String) async throws {
        try await history.postgres.query(
            """
            UPDATE chat.chats SET title = \(title), chat = jsonb_set(chat, '{title}', to_jsonb(\(title)::text))
            WHERE id = \(chatID)
            """, logger: logger)
    }

    /// Asks the task model (or the chat's) for a JSON object and returns its `key`; nil when it did not answer one.
    func generate(_ job: Job, prompt: String, key: String) async -> JSONValue? {
        do {
            let local = job.entry.base.map { $0.connectionType == .string("local") } ?? false
            let preferred = local ? taskModel : taskModelExternal
            // The task model when this user may use it, else the chat's own (resolved once either way).
            var modelID = job.entry.id
            var resolved: (entry: ModelEntry, base: BaseModel)? = nil
            if let preferred, !preferred.isEmpty, let found = try? await registry.resolve(preferred, for: job.user) {
                modelID = preferred
                resolved = found
            }
            if resolved == nil { resolved = try await registry.resolve(modelID, for: job.user) }
            guard let (entry, base) = resolved else { return nil }
            let body: [String: JSONValue] = [
                "model": .string(modelID), "messages": .array([.object(["role": .string("user"), "content": .string(prompt)])]),
                "stream": .bool(false), "max_tokens": .int(1000),
            ]
            let settings = try await registry.bases.settings.current()
            let request = try ProviderRequest.make(body: body, entry: entry, base: base, settings: settings, user: job.user)
            let relay = self.relay
            let (response, data) = try await withDeadline(.seconds(120)) {
                let response = try await relay.execute(request)
                return (response, try await relay.collect(response))
            }
            guard response.status == .ok, let value = try? JSONDecoder().decode(JSONValue.self, from: data) else { return nil }
            let answer = request.ollama ? JSONValue.parse(OllamaFormat.completion(value)) : value
            let message = answer?["choices"]?.arrayValue?.first?["message"]
            let text = message?["content"]?.stringValue ?? message?["reasoning_content"]?.stringValue ?? ""
            guard let open = text.firstIndex(of: "{"), let close = text.lastIndex(of: "}"), open < close,
                let object = JSONValue.parse(String(text[open...close]))
            else { return nil }
            return object[key]
        } catch {
            logger.debug("background task failed", metadata: ["key": "\(key)", "error": "\(error)"])
            return nil
        }
    }

    func failed(_ job: Job, detail: String) async {
        let error = JSONValue.object(["content": .string(detail)])
        var fields: [String: JSONValue] = ["error": error, "done": .bool(true)]
        if let parent = job.userMessageID { fields["parentId"] = .string(parent) }
        _ = try? await save(job, fields: fields)
        await job.emitter.emit("chat:message:error", .object(["error": error, "done": .bool(true)]))
    }

    func cancelled(_ job: Job, output: TaskOutput) async {
        let item = output.item(status: "incomplete")
        _ = try? await save(job, fields: ["done": .bool(true), "output": .array([item.value]), "content": .string(output.text.trimmingCharacters(in: .whitespacesAndNewlines))])
        var data = OrderedObject()
        data.set("output", .list([item]))
        await job.emitter.emit("chat:tasks:cancel", data)
        await job.emitter.emit("chat:tasks:cancel", raw: nil)
    }

    func end(_ job: Job) async {
        let emitter = job.emitter
        running.withLockedValue { $0[emitter.taskID] = nil }
        _ = try? await redis.send(["ZREM", Self.tasksKey, emitter.taskID])
        _ = try? await redis.send(["ZREM", Self.chatKey(emitter.chatID), emitter.taskID])
        _ = try? await redis.send(["DEL", Self.infoKey(emitter.taskID)])
        // The chat stays active while another of its tasks runs.
        if (try? await taskIDs(chatID: emitter.chatID).isEmpty) ?? true {
            await emitter.emit("chat:active", .object(["active": .bool(false), "folder_id": job.folder]))
        }
        await emitter.close()
    }

    /// Stops a task if it runs here (every replica hears the stop on pub/sub).
    func cancelLocal(_ taskID: String) {
        running.withLockedValue { $0[taskID] }?.cancel()
    }

    /// Stops this replica's tasks when the service stops, while Postgres and Redis are still there (services
    /// stop in the reverse order of their start).
    struct Shutdown: Service {
        let tasks: ChatTasks
        func run() async throws {
            try? await gracefulShutdown()
            await tasks.cancelAll()
        }
    }

    /// Stops every task of this replica (shutdown): each saves what it has and says it was cancelled.
    func cancelAll() async {
        let tasks = running.withLockedValue { Array($0.values) }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
    }

    func stop(_ taskID: String) async throws {
        _ = try await redis.send(["PUBLISH", Self.stopChannel, taskID])
    }

    /// Ids of the tasks running for a chat (or all), without the lapsed ones.
    func taskIDs(chatID: String?) async throws -> [String] {
        let key = chatID.map(Self.chatKey) ?? Self.tasksKey
        let now = String(Int(Date().timeIntervalSince1970))
        return try await redis.send(["ZRANGEBYSCORE", key, "(" + now, "+inf"]).array?.compactMap(\.string) ?? []
    }

    /// Who a task belongs to: `{chat_id, user_id, message_id}` while it runs.
    func info(_ taskID: String) async throws -> JSONValue? {
        try await redis.send(["GET", Self.infoKey(taskID)]).string.flatMap(JSONValue.parse)
    }
}

/// The answer as it builds up.
struct TaskOutput: Sendable {
    var text = ""
    var usage: OrderedObject?
    var streamed = true
    /// An error the provider sent inside its stream (saved with the answer).
    var error: String?
    let itemID = "msg_" + String(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24))

    func item(status: String) -> OrderedObject {
        var item = OrderedObject([
            ("type", .string("message")), ("id", .string(itemID)), ("status", .string(status)), ("role", .string("assistant")),
        ])
        item["content"] = .array([.object(["type": .string("output_text"), "text": .string(text.trimmingCharacters(in: .whitespacesAndNewlines))])])
        return item
    }
}

/// Emits one task's `events` to its user's sockets and keeps them in the task's Redis stream.
struct TaskEmitter: Sendable {
    let bus: RealtimeBus
    let redis: RedisClient
    let logger: Logger
    let userID: String
    let chatID: String
    let messageID: String
    let taskID: String

    func emit(_ type: String, _ data: OrderedObject, messageID: JSONValue? = nil) async {
        await emit(type, raw: data.text, messageID: messageID)
    }

    func emit(_ type: String, _ data: JSONValue, messageID: JSONValue? = nil) async {
        await emit(type, raw: data.jsonText, messageID: messageID)
    }

    /// `data` nil: an event with a type and no data.
    func emit(_ type: String, raw data: String?, messageID: JSONValue? = nil) async {
        let id = (messageID ?? .string(self.messageID)).jsonText
        let event = "{\"chat_id\":" + JSONValue.string(chatID).jsonText + ",\"message_id\":" + id + ",\"data\":{\"type\":"
            + JSONValue.string(type).jsonText + (data.map { ",\"data\":" + $0 } ?? "") + "}}"
        await bus.emit(raw: "events", event, to: .user(userID))
        _ = try? await redis.send(["XADD", ChatTasks.eventsKey(taskID), "MAXLEN", "~", "5000", "*", "event", event])
    }

    /// The stream stays readable for a while after the task ends.
    func close() async {
        _ = try? await redis.send(["EXPIRE", ChatTasks.eventsKey(taskID), String(ChatTasks.eventsKept)])
    }
}

/// The prompts of the background tasks: our wording, the original's structure (a task, rules, the expected
/// JSON, and the recent chat history in `<chat_history>`).
enum TaskPrompts {
    static func history(_ chain: [(role: String, content: String)], last: Int = 2) -> String {
        chain.suffix(last).map { $0.role.uppercased() + ": " + $0.content }.joined(separator: "\n")
    }

    static func title(_ chain: [(role: String, content: String)]) -> String {
        """
        ### Task:
        Write a short title (two to four words) that sums up the chat below.
        ### Guidelines:
        - Use the language the chat is written in.
        - No quotation marks, no emojis, no trailing punctuation.
        ### Output:
        Only a JSON object: { "title": "the title" }
        ### Chat History:
        <chat_history>
        \(history(chain))
        </chat_history>
        """
    }

    static func followUps(_ chain: [(role: String, content: String)]) -> String {
        """
        ### Task:
        Suggest three to five short questions the user might ask next, from the user's point of view.
        ### Output:
        Only a JSON object: { "follow_ups": ["question one?", "question two?"] }
        ### Chat History:
        <chat_history>
        \(history(chain, last: 6))
        </chat_history>
        """
    }

    static func tags(_ chain: [(role: String, content: String)]) -> String {
        """
        ### Task:
        Give one to three broad topic tags for the chat below.
        ### Output:
        Only a JSON object: { "tags": ["tag1", "tag2"] }
        ### Chat History:
        <chat_history>
        \(history(chain, last: 6))
        </chat_history>
        """
    }
}
