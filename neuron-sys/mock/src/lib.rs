//! The mock libnrt.
