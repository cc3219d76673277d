-- Notes, who pinned them, and access grants for workspace resources (notes now; prompts, tools and models
-- later), shaped as the real server's `access_grant` table.
CREATE TABLE notes (
    id text COLLATE "C" PRIMARY KEY,
    user_id text COLLATE "C" NOT NULL,
    title text NOT NULL,
    data jsonb NOT NULL DEFAULT '{}',
    meta jsonb,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX notes_user ON notes (user_id, updated_at DESC);
CREATE TABLE pinned_notes (
    user_id text COLLATE "C" NOT NULL,
    note_id text COLLATE "C" NOT NULL REFERENCES notes (id) ON DELETE CASCADE,
    created_at bigint NOT NULL,
    PRIMARY KEY (user_id, note_id)
);
CREATE TABLE access_grants (
    id text PRIMARY KEY,
    resource_type text NOT NULL,
    resource_id text COLLATE "C" NOT NULL,
    principal_type text NOT NULL,
    principal_id text NOT NULL,
    permission text NOT NULL,
    created_at bigint NOT NULL,
    UNIQUE (resource_type, resource_id, principal_type, principal_id, permission)
);
CREATE INDEX access_grants_principal ON access_grants (resource_type, principal_type, principal_id, permission);
