-- Console logs relayed between controller replicas through PostgreSQL
-- (docs/decisions.md §30). A replica that does not hold a host's agent
-- connection asks through log_relays; the replica that holds it streams the
-- agent's chunks back as log_relay_chunks rows. Everything here but the
-- links lives only as long as a stream: UNLOGGED (no WAL, not on standbys;
-- a failover ends the streams in flight, and their clients ask again).

-- Each replica's last sign of life (cloud_log_relay_beat, every second).
CREATE UNLOGGED TABLE controller_replicas (
    id text COLLATE "C" PRIMARY KEY,
    beat timestamptz NOT NULL
);

-- Which replica holds each host's agent connection, for the session it
-- holds (a newer session elsewhere wins). Kept by the holders' beats.
CREATE TABLE agent_links (
    host_id text COLLATE "C" PRIMARY KEY,
    replica text COLLATE "C" NOT NULL,
    session_epoch bigint NOT NULL
);
CREATE INDEX agent_links_replica ON agent_links (replica);

CREATE UNLOGGED TABLE log_relays (
    id bigserial PRIMARY KEY,
    asker text COLLATE "C" NOT NULL,
    holder text COLLATE "C" NOT NULL,
    host text COLLATE "C" NOT NULL,
    instance_id text COLLATE "C" NOT NULL,
    tail_bytes bigint NOT NULL,
    tail_lines integer NOT NULL,
    follow boolean NOT NULL,
    -- asked -> open (the holder took it) -> done (its last row is written)
    state text NOT NULL DEFAULT 'asked' CHECK (state IN ('asked', 'open', 'done')),
    unread bigint NOT NULL DEFAULT 0, -- bytes in chunks not read yet
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX log_relays_holder ON log_relays (holder);
CREATE INDEX log_relays_asker ON log_relays (asker);

-- Deleted by the asker as it reads them.
CREATE UNLOGGED TABLE log_relay_chunks (
    relay_id bigint NOT NULL REFERENCES log_relays (id) ON DELETE CASCADE,
    seq integer NOT NULL,
    -- data: bytes of the log; eof: the agent's last chunk (message: its
    -- error, if any); lost: the agent's connection ended (message: why);
    -- refused: the holder could not open the stream (status, message)
    kind text NOT NULL CHECK (kind IN ('data', 'eof', 'lost', 'refused')),
    data bytea NOT NULL,
    log_offset bigint NOT NULL,
    status integer,
    message text,
    PRIMARY KEY (relay_id, seq)
);
