-- Custom models (presets on a provider model, or a provider model's own entry with its access grants), their
-- version history, and token usage per user, model and day as completions report it.
CREATE TABLE models (
    id text PRIMARY KEY,
    user_id text NOT NULL,
    base_model_id text,
    name text NOT NULL,
    -- JSON text, not jsonb: the client's key order comes back as it was sent.
    params text NOT NULL DEFAULT '{}',
    meta text NOT NULL DEFAULT '{}',
    is_active boolean NOT NULL DEFAULT true,
    version_id text,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    -- Insertion order: the original lists rows in the order they were made.
    seq bigserial NOT NULL
);
CREATE INDEX models_user ON models (user_id);

CREATE TABLE model_history (
    id text PRIMARY KEY,
    model_id text NOT NULL,
    parent_id text,
    user_id text NOT NULL,
    commit_message text,
    snapshot text NOT NULL,
    created_at bigint NOT NULL,
    seq bigserial NOT NULL
);
CREATE INDEX model_history_model ON model_history (model_id, seq DESC);

CREATE TABLE usage (
    user_id text NOT NULL,
    model_id text NOT NULL,
    day date NOT NULL,
    requests bigint NOT NULL DEFAULT 0,
    prompt_tokens bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, model_id, day)
);
