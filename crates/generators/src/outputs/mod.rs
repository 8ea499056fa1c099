//! Placeholder: written by the outputs helper.
