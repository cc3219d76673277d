-- realtime keeps sockets in memory and presence in Redis; this schema holds only what must survive restarts.
CREATE TABLE IF NOT EXISTS settings (
    key text PRIMARY KEY,
    value jsonb NOT NULL
);
