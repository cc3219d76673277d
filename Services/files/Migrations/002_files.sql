-- Uploaded files. The bytes live in UPLOAD_DIR under `storage_name`; `meta` is JSON text so its keys keep the
-- original's order (name, content_type, size, file_hash, data, ...).
CREATE TABLE files (
    id text PRIMARY KEY,
    user_id text NOT NULL,
    hash text,
    filename text NOT NULL,
    storage_name text NOT NULL,
    data jsonb NOT NULL DEFAULT '{}',
    meta text NOT NULL DEFAULT '{}',
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX files_user_updated ON files (user_id, updated_at DESC, id DESC);
CREATE INDEX files_created ON files (created_at DESC, id DESC);
