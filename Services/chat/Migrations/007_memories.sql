-- What users asked the assistant to remember: text with an optional path, and its embedding when an
-- embedding engine is configured (ranked by cosine similarity; by full-text rank otherwise).
CREATE TABLE memories (
    id text COLLATE "C" PRIMARY KEY,
    user_id text COLLATE "C" NOT NULL,
    type text NOT NULL DEFAULT 'context',
    path text,
    content text NOT NULL,
    meta json,
    embedding float8[],
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    seq bigserial
);
CREATE INDEX memories_user ON memories (user_id, seq);
