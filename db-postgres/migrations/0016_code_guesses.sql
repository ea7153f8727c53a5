-- Wrong launch codes, counted per network (an IPv4 address, an IPv6 /64) and for all, in
-- the database every instance shares. A locked entry is never evicted before its lock-out
-- ends: eviction cannot unlock.
CREATE TABLE code_guesses (
    key TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);
CREATE INDEX code_guesses_by_window ON code_guesses (window_start);
