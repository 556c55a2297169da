//! Workflow definitions as the workflow service stores them and the execution
//! service runs them: the node [`catalog`] (every node type, its configuration
//! schema, handles and credential slots), the [`definition`] format with its
//! triggers, the names of the [`events`] EVENT triggers follow, and [`validation`], which turns a draft into a list of problems a
//! user can fix. No I/O: both services call these rules with data they loaded.

pub mod catalog;
pub mod definition;
pub mod events;
pub mod validation;
