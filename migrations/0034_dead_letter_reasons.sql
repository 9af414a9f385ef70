-- Dead letters counted by reason code (shared/constants.py DeadReason), added
-- up by the writers once the broker confirmed each (shared/dead_letters.py):
-- counters for /metrics and /health, not what the queue holds now (replayed
-- letters stay counted). `pings` counts the pings of refused parts
-- (invalid_values, too_late, database_rejected); a message refused whole for
-- its shape adds none.
CREATE TABLE dead_letter_reasons (
    code        text        PRIMARY KEY,
    messages    bigint      NOT NULL,
    pings       bigint      NOT NULL,
    last_at     timestamptz NOT NULL,
    last_reason text        NOT NULL
);
