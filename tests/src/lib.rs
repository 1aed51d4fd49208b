//! End-to-end tests of the whole stack — mock libnrt → `neuron-sys` loader → `neuron-rt` →
//! `dataparallel` — live in `tests/tests/`; the C and C++ hosts that exercise the C ABI live
//! in `tests/cpp/` and run through `cargo xtask c-tests`. This library is empty.
