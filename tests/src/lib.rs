//! Holds no code: the end-to-end tests live in `tests/`.
