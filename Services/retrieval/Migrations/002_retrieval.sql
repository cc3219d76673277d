-- Documents cut into chunks for search: each chunk belongs to a collection (`file-<id>` for a file, the
-- knowledge id for a knowledge base), carries its text (with a full-text vector) and, when an embedding engine
-- is configured, its embedding (pgvector; HNSW indexes per dimension are made when a dimension first appears).
-- In `public`, so the type and its operators resolve without naming the schema.
CREATE EXTENSION IF NOT EXISTS vector SCHEMA public;

CREATE TABLE chunks (
    id text PRIMARY KEY,
    collection text NOT NULL,
    file_id text,
    text text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    embedding public.vector,
    dims integer,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED,
    seq bigserial NOT NULL
);
CREATE INDEX chunks_collection ON chunks (collection, seq);
CREATE INDEX chunks_file ON chunks (file_id);
CREATE INDEX chunks_tsv ON chunks USING gin (tsv);

-- What retrieval knows of each uploaded file (from the files service's events): owner, name, meta, state.
CREATE TABLE files (
    id text PRIMARY KEY,
    user_id text NOT NULL,
    filename text NOT NULL,
    meta text NOT NULL DEFAULT '{}',
    hash text,
    status text NOT NULL DEFAULT 'pending',
    content text,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX files_user ON files (user_id);

CREATE TABLE knowledge (
    id text PRIMARY KEY,
    user_id text NOT NULL,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    meta jsonb,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX knowledge_user ON knowledge (user_id, updated_at DESC);

CREATE TABLE knowledge_files (
    knowledge_id text NOT NULL REFERENCES knowledge (id) ON DELETE CASCADE,
    file_id text NOT NULL,
    user_id text NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (knowledge_id, file_id)
);
CREATE INDEX knowledge_files_file ON knowledge_files (file_id);

CREATE TABLE access_grants (
    id text PRIMARY KEY,
    resource_type text NOT NULL,
    resource_id text NOT NULL,
    principal_type text NOT NULL,
    principal_id text NOT NULL,
    permission text NOT NULL,
    created_at bigint NOT NULL,
    UNIQUE (resource_type, resource_id, principal_type, principal_id, permission)
);
