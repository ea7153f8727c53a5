-- Issue 22: SQLite's 0018 moves the charge of a chunk's bytes to its attempt into a
-- trigger, so that its group commit is one statement (each statement there is a hand-off
-- between threads). PostgreSQL keeps its explicit update: it locks the batch's attempts in
-- id order first, which two instances committing at once rely on not to deadlock, and a
-- per-row trigger would lock them in the rows' order instead. This file keeps both
-- backends' migrations numbered alike.
SELECT 1;
