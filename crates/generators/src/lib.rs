//! Generators (ComfyUI, Cosmos), scheduler and journal. Filled in by issue 4.
