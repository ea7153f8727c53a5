-- Store-and-forward (issue 9): an agent keys its own streams; the first chunk carries the
-- stream key sealed to the attempt's public key (the opening), kept here. Such streams
-- have no salt (empty). Each chunk records the transport that carried it.
ALTER TABLE streams ADD COLUMN opening BYTEA;
ALTER TABLE chunks ADD COLUMN transport TEXT NOT NULL DEFAULT 'https' CHECK (transport IN ('https', 'webrtc'));
