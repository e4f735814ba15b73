-- Chunked upload sessions live in PostgreSQL (docs/decisions.md §32), so a
-- PATCH or the finishing PUT may land on any controller replica. Each
-- PATCH stores its bytes as one piece keyed by the session and the offset
-- it starts at, in the statement that advances received
-- (cloud_upload_piece); the finishing PUT copies the pieces, in offset
-- order, into blob_chunks and deletes the session with them. Idle
-- sessions are swept by every replica (cloud_upload_sweep).
CREATE TABLE upload_sessions (
    id text COLLATE "C" PRIMARY KEY,
    actor text,
    received bigint NOT NULL DEFAULT 0 CHECK (received >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX upload_sessions_updated ON upload_sessions (updated_at);

CREATE TABLE upload_pieces (
    session text COLLATE "C" NOT NULL
        REFERENCES upload_sessions (id) ON DELETE CASCADE,
    off bigint NOT NULL CHECK (off >= 0),
    data bytea NOT NULL CHECK (length(data) > 0),
    PRIMARY KEY (session, off)
);
-- As blob_chunks: out of line, not compressed.
ALTER TABLE upload_pieces ALTER COLUMN data SET STORAGE EXTERNAL;
