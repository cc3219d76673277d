-- HNSW indexes now leave files' own collections (`file-<id>`) out; they are searched exactly. The old indexes
-- (every collection) go, and the service makes the new ones (`chunks_vectors_<dims>`) when a dimension appears.
-- (One line: the migration runner ends a statement at a line that ends with a semicolon.)
DO $$ DECLARE name text; BEGIN FOR name IN SELECT indexname FROM pg_indexes WHERE schemaname = 'retrieval' AND indexname LIKE 'chunks\_embedding\_%' LOOP EXECUTE format('DROP INDEX retrieval.%I', name); END LOOP; END $$;
-- The duplicate-content check of a knowledge base (another file's chunks with the same text hash) looked at
-- every chunk of the collection: quadratic while a knowledge base filled.
CREATE INDEX chunks_collection_hash ON chunks (collection, (metadata ->> 'hash'));
