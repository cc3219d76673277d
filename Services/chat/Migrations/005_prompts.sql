-- Prompts (slash commands) and their version history, shaped as the real server's `prompt` and
-- `prompt_history` tables; access grants live in `access_grants` with resource_type 'prompt'.
CREATE TABLE prompts (
    id text COLLATE "C" PRIMARY KEY,
    command text COLLATE "C" NOT NULL UNIQUE,
    user_id text COLLATE "C" NOT NULL,
    name text NOT NULL,
    content text NOT NULL,
    data json,
    meta json,
    tags json,
    is_active boolean NOT NULL DEFAULT true,
    version_id text,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    seq bigserial
);
CREATE INDEX prompts_user ON prompts (user_id);
CREATE INDEX prompts_updated ON prompts (updated_at DESC);
CREATE TABLE prompt_history (
    id text COLLATE "C" PRIMARY KEY,
    prompt_id text COLLATE "C" NOT NULL,
    parent_id text,
    snapshot json NOT NULL,
    user_id text COLLATE "C" NOT NULL,
    commit_message text,
    created_at bigint NOT NULL,
    seq bigserial
);
CREATE INDEX prompt_history_prompt ON prompt_history (prompt_id, created_at DESC, seq DESC);
