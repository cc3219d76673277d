-- What an admin saved through /api/v1/retrieval/config/update and /embedding/update (one JSON object per key);
-- the environment's values apply to what was never saved.
CREATE TABLE settings (
    key text PRIMARY KEY,
    value jsonb NOT NULL
);
