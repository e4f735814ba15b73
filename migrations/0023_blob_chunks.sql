-- Blob content lives in PostgreSQL (docs/decisions.md §29): each blob is
-- cut into chunks of at most 1 MiB, one row each, written in the
-- transaction that creates its blobs row, so a committed blob row always
-- has all its chunks. A replica's --data-dir keeps a cache of the files.
-- Rows of blobs uploaded before this migration have no chunks until a
-- replica that still holds the file uploads it again.
CREATE TABLE blob_chunks (
    digest text NOT NULL REFERENCES blobs (digest) ON DELETE CASCADE,
    seq integer NOT NULL CHECK (seq >= 0),
    data bytea NOT NULL,
    PRIMARY KEY (digest, seq)
);
-- Out of line, not compressed: images are mostly compressed already, and
-- pglz would cost CPU on every upload and every cache fill.
ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
