-- HNSW indexes now leave files' own collections (`file-<id>`) out; they are searched exactly. The new indexes
-- (`chunks_vectors_<dims>`, as the service makes them when a dimension first appears) are built here for the
-- dimensions already stored, so knowledge bases keep their index through the upgrade; then the old ones go.
-- (One line each: the migration runner ends a statement at a line that ends with a semicolon.)
DO $$ DECLARE d integer; found integer[]; BEGIN SELECT coalesce(array_agg(DISTINCT dims), '{}') INTO found FROM retrieval.chunks WHERE dims BETWEEN 1 AND 2000; FOREACH d IN ARRAY found LOOP EXECUTE format('CREATE INDEX IF NOT EXISTS chunks_vectors_%s ON retrieval.chunks USING hnsw ((embedding::public.vector(%s)) public.vector_cosine_ops) WITH (m = 16, ef_construction = 32) WHERE dims = %s AND collection NOT LIKE ''file-%%''', d, d, d); END LOOP; END $$;
DO $$ DECLARE name text; BEGIN FOR name IN SELECT indexname FROM pg_indexes WHERE schemaname = 'retrieval' AND indexname LIKE 'chunks\_embedding\_%' LOOP EXECUTE format('DROP INDEX retrieval.%I', name); END LOOP; END $$;
-- The duplicate-content check of a knowledge base (another file's chunks with the same text hash) looked at
-- every chunk of the collection: quadratic while a knowledge base filled.
CREATE INDEX chunks_collection_hash ON chunks (collection, (metadata ->> 'hash'));
