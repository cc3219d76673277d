// /api/v1/groups: user groups and their members (admin), and the groups a user can see.
import Foundation
import Hummingbird
import PostgresNIO
import Shared

struct GroupsController {
    let accounts: Accounts
    static let groupNotFound = APIError(.notFound, "Group not found.")

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: list)
        routes.post("create", use: create)
        routes.get("id/:id", use: get)
        routes.post("id/:id/update", use: update)
        routes.post("id/:id/users/add", use: addUsers)
        routes.post("id/:id/users/remove", use: removeUsers)
        routes.post("id/:id/users", use: members)
        routes.delete("id/:id/delete", use: delete)
        return routes
    }

    struct GroupForm: Decodable {
        var name: String
        var description: String
        var parentGroupID: String?
        var permissions: JSONValue?
        var data: JSONValue?
        enum CodingKeys: String, CodingKey {
            case name, description, permissions, data
            case parentGroupID = "parent_group_id"
        }
    }

    struct UserIDsForm: Decodable {
        var userIDs: [String]?
        enum CodingKeys: String, CodingKey { case userIDs = "user_ids" }
    }

    @Sendable func list(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let identity = try context.requireVerified()
        let groups = identity.isAdmin
            ? try await accounts.groups.all() : try await accounts.groups.groups(ofUser: identity.userID)
        return try JSONResponse.make(groups)
    }

    @Sendable func create(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let form = try await JSONBody.decode(GroupForm.self, from: request)
        try Self.validate(form)
        let now = Int(Date().timeIntervalSince1970)
        var data = form.data?.objectValue ?? [:]
        var config = data["config"]?.objectValue ?? [:]
        if config["share"] == nil { config["share"] = .string("members") }
        data["config"] = .object(config)
        let group = GroupRecord(
            parentGroupID: form.parentGroupID, id: UUID().uuidString.lowercased(), userID: admin.userID, name: form.name,
            description: form.description, data: .object(data), meta: nil, permissions: form.permissions,
            createdAt: now, updatedAt: now, memberCount: 0)
        let accounts = self.accounts
        try await accounts.postgres.withTransaction(logger: accounts.logger) { connection in
            if let parent = form.parentGroupID, try await accounts.groups.find(id: parent, on: connection) == nil {
                throw APIError(.notFound, "Parent group not found.")
            }
            try await accounts.groups.insert(group, on: connection)
            try await accounts.publish("group.created", actor: admin.userID, data: ["group_id": .string(group.id)], on: connection)
        }
        return try JSONResponse.make(group)
    }

    @Sendable func get(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        guard let group = try await accounts.groups.find(id: try context.parameters.require("id")) else {
            throw APIError.notFound
        }
        return try JSONResponse.make(group)
    }

    @Sendable func update(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = try context.parameters.require("id")
        let raw = Data(buffer: try await JSONBody.collect(request))
        let form = try JSONBody.decode(GroupForm.self, from: raw)
        try Self.validate(form)
        let body = try? JSONBody.decode(JSONValue.self, from: raw)
        let accounts = self.accounts
        let group = try await accounts.postgres.withTransaction(logger: accounts.logger) { connection -> GroupRecord in
            guard var group = try await accounts.groups.find(id: id, on: connection) else { throw Self.groupNotFound }
            group.name = form.name
            group.description = form.description
            if let permissions = form.permissions { group.permissions = permissions }
            if let newData = form.data?.objectValue {
                var data = group.data?.objectValue ?? [:]
                let config = (data["config"]?.objectValue ?? [:]).merging(newData["config"]?.objectValue ?? [:]) { _, new in new }
                data.merge(newData) { _, new in new }
                data["config"] = .object(config)
                group.data = .object(data)
            }
            // A key given as null moves the group to the top; an absent key leaves its parent as it is.
            if body?["parent_group_id"] != nil {
                if let parent = form.parentGroupID {
                    if try await accounts.groups.isSelfOrAncestor(id, of: parent, on: connection) {
                        throw APIError(.badRequest, "A group cannot be its own parent or a descendant of itself.")
                    }
                    guard try await accounts.groups.find(id: parent, on: connection) != nil else {
                        throw APIError(.notFound, "Parent group not found.")
                    }
                }
                group.parentGroupID = form.parentGroupID
            }
            group.updatedAt = Int(Date().timeIntervalSince1970)
            try await accounts.groups.update(group, on: connection)
            try await accounts.publish("group.updated", actor: admin.userID, data: ["group_id": .string(id)], on: connection)
            return try await accounts.groups.find(id: id, on: connection) ?? group
        }
        return try JSONResponse.make(group, headers: Invalidation.all)
    }

    @Sendable func addUsers(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        try await changeMembers(request, context: context, adding: true)
    }

    @Sendable func removeUsers(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        try await changeMembers(request, context: context, adding: false)
    }

    private func changeMembers(_ request: Request, context: ServiceRequestContext, adding: Bool) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = try context.parameters.require("id")
        let form = try await JSONBody.decode(UserIDsForm.self, from: request)
        let userIDs = form.userIDs ?? []
        let accounts = self.accounts
        let group = try await accounts.postgres.withTransaction(logger: accounts.logger) { connection -> GroupRecord in
            guard try await accounts.groups.find(id: id, on: connection) != nil else { throw Self.groupNotFound }
            if adding {
                try await accounts.groups.addMembers(userIDs, groupID: id, on: connection)
            } else {
                try await accounts.groups.removeMembers(userIDs, groupID: id, on: connection)
            }
            try await accounts.publish(
                "group.members_changed", actor: admin.userID,
                data: ["group_id": .string(id), "user_ids": .array(userIDs.map(JSONValue.string))], on: connection)
            guard let group = try await accounts.groups.find(id: id, on: connection) else { throw Self.groupNotFound }
            return group
        }
        return try JSONResponse.make(group, headers: Invalidation.all)
    }

    @Sendable func members(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let users = try await accounts.groups.members(groupID: try context.parameters.require("id"), users: accounts.users)
        return try JSONResponse.make(JSONValue.array(users.map { $0.info() }))
    }

    @Sendable func delete(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = try context.parameters.require("id")
        let accounts = self.accounts
        try await accounts.postgres.withTransaction(logger: accounts.logger) { connection in
            guard let group = try await accounts.groups.find(id: id, on: connection) else { throw Self.groupNotFound }
            try await accounts.groups.delete(group, on: connection)
            try await accounts.publish("group.deleted", actor: admin.userID, data: ["group_id": .string(id)], on: connection)
        }
        return try JSONResponse.make(true, headers: Invalidation.all)
    }

    static func validate(_ form: GroupForm) throws {
        if form.parentGroupID == "" { throw APIError(.badRequest, "Parent group must be a group ID or null.") }
        if let data = form.data {
            guard case .object(let object) = data else {
                throw APIError.validation([
                    ValidationIssue(type: "dict_type", loc: [.string("body"), .string("data")], msg: "Input should be a valid dictionary", input: data)
                ])
            }
            if let config = object["config"], config != .null, config.objectValue == nil {
                throw APIError.validation([
                    ValidationIssue(
                        type: "value_error", loc: [.string("body"), .string("data")],
                        msg: "Value error, Group config must be an object.", input: data, ctx: .object(["error": .object([:])]))
                ])
            }
        }
        if let permissions = form.permissions, permissions != .null, permissions.objectValue == nil {
            throw APIError.validation([
                ValidationIssue(type: "dict_type", loc: [.string("body"), .string("permissions")], msg: "Input should be a valid dictionary", input: permissions)
            ])
        }
    }
}
