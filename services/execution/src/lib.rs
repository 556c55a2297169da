//! The execution service.
