-- Events waiting to be moved to this service's Redis stream by the outbox relay.
CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    stream text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
