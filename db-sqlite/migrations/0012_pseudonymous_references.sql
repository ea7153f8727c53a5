-- The platform's reference of a candidate is kept as a keyed pseudonym (in `ref`: unique in
-- its sitting, what look-ups match) and sealed under the attempt's data key (`ref_sealed`,
-- cleared at destruction), so that nothing left after a destruction, or in a backup once
-- its key epoch is gone, names the person. Rows of earlier versions hold the clear
-- reference (`ref_is_pseudonym = 0`) until the server seals them at start.
ALTER TABLE attempts ADD COLUMN ref_sealed BLOB;
ALTER TABLE attempts ADD COLUMN ref_is_pseudonym INTEGER NOT NULL DEFAULT 0;
