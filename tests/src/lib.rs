//! End-to-end tests of the whole stack against the mock libnrt live in `tests/tests/`.
