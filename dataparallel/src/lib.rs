//! The data-parallel engine (issue 4 fills this in).
