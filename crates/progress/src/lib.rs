//! Progress tracking, rendering and throttled sinks. Filled in by issue 3.
