-- Targets beyond bare IPs: hostnames resolved by the prober, TCP connect and
-- HTTP probes, and tags for bulk operations.
ALTER TABLE targets
    ALTER COLUMN address DROP NOT NULL,
    ADD COLUMN hostname      text,
    ADD COLUMN kind          text    NOT NULL DEFAULT 'icmp'
        CHECK (kind IN ('icmp', 'tcp', 'http')),
    ADD COLUMN port          integer CHECK (port BETWEEN 1 AND 65535),
    ADD COLUMN url           text,
    ADD COLUMN family        text    NOT NULL DEFAULT 'any'
        CHECK (family IN ('any', 'ipv4', 'ipv6')),
    ADD COLUMN http_method   text    NOT NULL DEFAULT 'GET'
        CHECK (http_method IN ('GET', 'HEAD')),
    ADD COLUMN expect_status integer CHECK (expect_status BETWEEN 100 AND 599),
    ADD COLUMN expect_body   text,
    ADD COLUMN tags          text[]  NOT NULL DEFAULT '{}',
    -- Exactly what is probed: an IP, a hostname, or (http) a URL.
    ADD CONSTRAINT targets_probe_shape CHECK (
        CASE kind
            WHEN 'icmp' THEN (address IS NOT NULL) <> (hostname IS NOT NULL) AND url IS NULL
                             AND port IS NULL
            WHEN 'tcp'  THEN (address IS NOT NULL) <> (hostname IS NOT NULL) AND url IS NULL
                             AND port IS NOT NULL
            WHEN 'http' THEN url IS NOT NULL AND address IS NULL AND hostname IS NULL
                             AND port IS NULL
        END);

CREATE INDEX targets_tags ON targets USING gin (tags);
