-- Chats, their folders, tags, shared snapshots and the access grants of shares.
CREATE TABLE chats (
    id text PRIMARY KEY,
    user_id text NOT NULL,
    title text NOT NULL,
    chat jsonb NOT NULL DEFAULT '{}',
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    share_id text UNIQUE,
    archived boolean NOT NULL DEFAULT false,
    pinned boolean NOT NULL DEFAULT false,
    meta jsonb NOT NULL DEFAULT '{}',
    variables jsonb,
    folder_id text,
    tasks jsonb,
    summary text,
    current_message_id text,
    last_read_at bigint
);
CREATE INDEX chats_user_updated ON chats (user_id, updated_at DESC, id);
CREATE INDEX chats_user_folder ON chats (user_id, folder_id) WHERE folder_id IS NOT NULL;
CREATE INDEX chats_user_pinned ON chats (user_id) WHERE pinned;
CREATE INDEX chats_user_archived ON chats (user_id, updated_at DESC) WHERE archived;
CREATE INDEX chats_tags ON chats USING gin ((meta -> 'tags'));

CREATE TABLE tags (
    id text NOT NULL,
    name text NOT NULL,
    user_id text NOT NULL,
    meta jsonb,
    PRIMARY KEY (id, user_id)
);

CREATE TABLE folders (
    id text PRIMARY KEY,
    parent_id text,
    user_id text NOT NULL,
    name text NOT NULL,
    items jsonb,
    meta jsonb,
    data jsonb,
    is_expanded boolean NOT NULL DEFAULT false,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX folders_user ON folders (user_id, parent_id);

CREATE TABLE shared_chats (
    id text PRIMARY KEY,
    chat_id text NOT NULL UNIQUE REFERENCES chats (id) ON DELETE CASCADE,
    user_id text NOT NULL,
    title text NOT NULL,
    chat jsonb NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX shared_chats_user ON shared_chats (user_id, updated_at DESC);

-- Who may read a shared chat besides its owner: `user` or `group` principals, `*` for every user,
-- and `anyone` `*` for readers who are not signed in.
CREATE TABLE share_grants (
    chat_id text NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    principal_type text NOT NULL,
    principal_id text NOT NULL,
    permission text NOT NULL,
    PRIMARY KEY (chat_id, principal_type, principal_id, permission)
);

-- Admin settings of the chat service (`/api/v1/chats/config`), one JSON object.
CREATE TABLE settings (
    key text PRIMARY KEY,
    value jsonb NOT NULL
);
