-- One live target per probe: the same address may be pinged and, beside it,
-- TCP-probed on a port; a hostname may be tracked once per address family.
-- Stopped and deleted targets may repeat.
DROP INDEX targets_live_address;
CREATE UNIQUE INDEX targets_live_identity ON targets
    (kind, coalesce(host(address), hostname), coalesce(port, 0), coalesce(url, ''), family)
    WHERE state IN ('active', 'paused');
-- The targets file names its entries; apply finds live targets by name.
CREATE INDEX targets_live_name ON targets (name) WHERE state IN ('active', 'paused');
