//! The workflow service.
