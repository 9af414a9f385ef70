-- Targets: the source of truth for what is tracked and in which state.
CREATE TABLE targets (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address     inet        NOT NULL,
    name        text,
    interval_ms integer     NOT NULL CHECK (interval_ms BETWEEN 100 AND 3600000),
    timeout_ms  integer     NOT NULL CHECK (timeout_ms BETWEEN 50 AND 60000),
    state       text        NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'paused', 'stopped', 'deleted')),
    -- Bumped on every change; probers ignore commands older than what they hold.
    rev         bigint      NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at  timestamptz
);

-- One live tracking per address; stopped and deleted ones may repeat.
CREATE UNIQUE INDEX targets_live_address ON targets (address)
    WHERE state IN ('active', 'paused');
CREATE INDEX targets_state ON targets (state);
