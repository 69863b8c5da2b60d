-- The mirror of every box's audit log (docs/FLEET.md, "PostgreSQL").

-- One row per box that has published anything the monitor accepted.
CREATE TABLE boxes (
    id              serial PRIMARY KEY,
    site            text NOT NULL,
    camera          text NOT NULL,
    -- Events [0, verified) are covered by a checkpoint that verified
    -- against them; range_hashes is their compact Merkle range (RFC 6962),
    -- the hashes of the perfect subtrees, 32 bytes each, left to right.
    verified        bigint NOT NULL DEFAULT 0,
    range_hashes    bytea NOT NULL DEFAULT '',
    -- The latest checkpoint note that verified, as received (with any
    -- witness cosignatures): what /v1/audit/checkpoint serves.
    checkpoint      bytea,
    checkpoint_size bigint,
    checkpoint_at   timestamptz,
    -- The last …/available payload: online, stopped or offline.
    available       text NOT NULL DEFAULT '',
    available_at    timestamptz,
    UNIQUE (site, camera)
);

-- Every event received, exactly as published (the Merkle leaf), once per
-- (box, seq). Those with seq >= boxes.verified are held: received, not yet
-- covered by a checkpoint, never served or judged.
CREATE TABLE events (
    box  integer NOT NULL REFERENCES boxes (id),
    seq  bigint NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (box, seq)
);

-- Checkpoints that verified, by size.
CREATE TABLE checkpoints (
    box         integer NOT NULL REFERENCES boxes (id),
    size        bigint NOT NULL,
    root        bytea NOT NULL,
    note        bytea NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (box, size)
);

-- Every notice a box published, by hash.
CREATE TABLE notices (
    box  integer NOT NULL REFERENCES boxes (id),
    hash text NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (box, hash)
);

-- Alarms, raised and cleared. At most one is active per (site, camera,
-- kind, key).
CREATE TABLE alarms (
    id             bigserial PRIMARY KEY,
    site           text NOT NULL,
    camera         text NOT NULL,
    kind           text NOT NULL,
    key            text NOT NULL DEFAULT '',
    message        text NOT NULL,
    payload_sha256 text NOT NULL DEFAULT '',
    count          bigint NOT NULL DEFAULT 1,
    raised_at      timestamptz NOT NULL,
    last_at        timestamptz NOT NULL,
    cleared_at     timestamptz
);
CREATE UNIQUE INDEX alarms_active ON alarms (site, camera, kind, key) WHERE cleared_at IS NULL;

-- Every payload refused (never stored as if valid): its SHA-256 and why.
CREATE TABLE rejects (
    id             bigserial PRIMARY KEY,
    site           text NOT NULL,
    camera         text NOT NULL,
    topic          text NOT NULL,
    reason         text NOT NULL,
    payload_sha256 text NOT NULL,
    size           integer NOT NULL,
    at             timestamptz NOT NULL
);
