-- Tools, functions and skills (the management side: Skiff stores their code and settings but does not run
-- them), their version history, and each user's valves for them. One table per concern, keyed by kind.
CREATE TABLE plugins (
    kind text NOT NULL,
    id text COLLATE "C" NOT NULL,
    user_id text COLLATE "C" NOT NULL,
    name text NOT NULL,
    type text,
    description text,
    content text,
    specs json,
    meta json,
    data json,
    valves json,
    is_active boolean NOT NULL DEFAULT true,
    is_global boolean NOT NULL DEFAULT false,
    version_id text,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    seq bigserial,
    PRIMARY KEY (kind, id)
);
CREATE INDEX plugins_user ON plugins (kind, user_id);
CREATE UNIQUE INDEX plugins_skill_name ON plugins (name) WHERE kind = 'skill';
CREATE TABLE plugin_history (
    id text COLLATE "C" PRIMARY KEY,
    kind text NOT NULL,
    plugin_id text COLLATE "C" NOT NULL,
    parent_id text,
    snapshot json NOT NULL,
    user_id text COLLATE "C" NOT NULL,
    commit_message text,
    created_at bigint NOT NULL,
    seq bigserial
);
CREATE INDEX plugin_history_plugin ON plugin_history (kind, plugin_id, created_at DESC);
CREATE TABLE plugin_user_valves (
    user_id text COLLATE "C" NOT NULL,
    kind text NOT NULL,
    plugin_id text COLLATE "C" NOT NULL,
    valves json NOT NULL,
    PRIMARY KEY (user_id, kind, plugin_id)
);
