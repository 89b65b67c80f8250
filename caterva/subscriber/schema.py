"""The subscriber state's SQLite schema (state.py) and the migrations that bring an older
database to it, in place: ``MIGRATIONS[n]`` upgrades version n to n + 1."""

SCHEMA_VERSION = 4

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE roots (
    name TEXT PRIMARY KEY,
    manifest_etag TEXT,
    followed_at REAL NOT NULL,
    seal TEXT,
    pinned INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE trusted_keys (
    root TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    how TEXT NOT NULL,
    since REAL NOT NULL
);
CREATE TABLE datasets (
    id INTEGER PRIMARY KEY,
    root TEXT NOT NULL REFERENCES roots(name) ON DELETE CASCADE,
    path TEXT NOT NULL,
    info TEXT NOT NULL,
    etag TEXT NOT NULL,
    UNIQUE (root, path)
);
CREATE TABLE chunks (
    dataset INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    atime REAL NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (dataset, idx)
) WITHOUT ROWID;
CREATE INDEX chunks_evictable ON chunks (atime) WHERE pinned = 0;
"""

MIGRATIONS: dict[int, str] = {
    # signed roots: the seal each root was synced to, and the key each root is bound to
    1: """ALTER TABLE roots ADD COLUMN seal TEXT;
          CREATE TABLE trusted_keys (root TEXT PRIMARY KEY, key TEXT NOT NULL,
                                     how TEXT NOT NULL, since REAL NOT NULL)""",
    # pinned roots: kept whole in the cache, never evicted (pins.py); their chunks say so
    # too, so eviction finds the oldest others in an index that holds only them
    2: """ALTER TABLE roots ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
          ALTER TABLE chunks ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
          DROP INDEX chunks_by_atime;
          CREATE INDEX chunks_evictable ON chunks (atime) WHERE pinned = 0""",
    # each info's etag beside it (read without parsing the info), the info as listed
    3: """ALTER TABLE datasets ADD COLUMN etag TEXT NOT NULL DEFAULT '';
          UPDATE datasets SET etag = json_extract(info, '$.etag'),
                              info = json_remove(info, '$.proto')""",
}
