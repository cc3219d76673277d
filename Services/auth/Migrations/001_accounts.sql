-- Accounts, credentials, API keys, groups, persistent configuration and the event outbox of the auth service.
CREATE TABLE users (
    id text PRIMARY KEY,
    email text NOT NULL,
    username text,
    role text NOT NULL,
    name text NOT NULL,
    profile_image_url text NOT NULL DEFAULT '/user.png',
    profile_banner_image_url text,
    bio text,
    gender text,
    date_of_birth text,
    timezone text,
    presence_state text,
    status_emoji text,
    status_message text,
    status_expires_at bigint,
    info jsonb,
    settings jsonb,
    oauth jsonb,
    scim jsonb,
    last_active_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    created_at bigint NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_created_at ON users (created_at);

CREATE TABLE credentials (
    user_id text PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    password_hash text NOT NULL,
    session_stamp text NOT NULL
);

-- Only a SHA-256 of each key is kept; `key_hint` is what GET shows back.
CREATE TABLE api_keys (
    user_id text PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    key_hash text NOT NULL UNIQUE,
    key_hint text NOT NULL,
    created_at bigint NOT NULL
);

CREATE TABLE groups (
    id text PRIMARY KEY,
    user_id text NOT NULL,
    name text NOT NULL,
    description text NOT NULL,
    parent_group_id text,
    data jsonb,
    meta jsonb,
    permissions jsonb,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);

CREATE TABLE group_members (
    group_id text NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at bigint NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

-- Persistent configuration: one JSON object of the admin config keys; environment values are the defaults.
CREATE TABLE config (
    id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    data jsonb NOT NULL,
    updated_at bigint NOT NULL
);

CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    stream text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
