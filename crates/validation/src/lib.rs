//! Request validation (no IO, no async). Filled in by issue 3.
