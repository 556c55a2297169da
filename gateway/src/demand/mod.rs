//! Demand control: refusing operations that would cost the fleet too much, before they run.
//!
//! Two kinds of limits, both off unless configured:
//! - **shape** ([`shape`]): tokens in the text (counted before parsing), then the depth,
//!   aliases, root fields and directives of the operation (after parsing, before
//!   validation and planning). An operation within them is cached with its plan, so the
//!   checks cost nothing the next time;
//! - **cost** ([`cost`]): the static cost from `@cost` and `@listSize` in the supergraph,
//!   with the request's variables (slicing arguments such as `first: $n`), against
//!   `max_cost`. A request that sends `"extensions": {"cost": true}` gets
//!   `extensions.cost` = `{estimated, actual, max}` in its response, the actual cost
//!   computed from what the response holds.
//!
//! A refusal is `400` with a code naming the limit (`MAX_DEPTH_EXCEEDED`, ...,
//! `COST_ESTIMATED_TOO_EXPENSIVE`) and `extensions.limit` and `extensions.measured`.

pub(crate) mod cost;
pub(crate) mod shape;

use serde_json::{json, Value};

use crate::error::{GraphQLError, RequestError};

/// The limits; `None` switches one off.
#[derive(Debug, Clone, PartialEq)]
pub struct DemandControl {
    pub max_tokens: Option<usize>,
    pub max_depth: Option<usize>,
    pub max_aliases: Option<usize>,
    pub max_root_fields: Option<usize>,
    pub max_directives: Option<usize>,
    /// Most estimated cost an operation may have.
    pub max_cost: Option<f64>,
    /// The size assumed for a list field without `@listSize`.
    pub default_list_size: f64,
}

impl Default for DemandControl {
    fn default() -> Self {
        DemandControl {
            max_tokens: None,
            max_depth: None,
            max_aliases: None,
            max_root_fields: None,
            max_directives: None,
            max_cost: None,
            default_list_size: 10.0,
        }
    }
}

/// Codes of demand-control refusals.
pub mod codes {
    pub const MAX_TOKENS_EXCEEDED: &str = "MAX_TOKENS_EXCEEDED";
    pub const MAX_DEPTH_EXCEEDED: &str = "MAX_DEPTH_EXCEEDED";
    pub const MAX_ALIASES_EXCEEDED: &str = "MAX_ALIASES_EXCEEDED";
    pub const MAX_ROOT_FIELDS_EXCEEDED: &str = "MAX_ROOT_FIELDS_EXCEEDED";
    pub const MAX_DIRECTIVES_EXCEEDED: &str = "MAX_DIRECTIVES_EXCEEDED";
    pub const COST_ESTIMATED_TOO_EXPENSIVE: &str = "COST_ESTIMATED_TOO_EXPENSIVE";
}

fn refusal(code: &str, what: &str, limit: Value, measured: Value) -> RequestError {
    RequestError::Refused(
        http::StatusCode::BAD_REQUEST,
        GraphQLError::new(format!(
            "The operation has {measured} {what}; at most {limit} are allowed. Simplify it \
             or split it into several operations."
        ))
        .with_code(code)
        .with_extension("limit", limit)
        .with_extension("measured", measured),
    )
}

impl DemandControl {
    /// The token limit, checked on the text before it is parsed.
    pub(crate) fn check_tokens(&self, query: &str) -> Result<(), RequestError> {
        let Some(max) = self.max_tokens else {
            return Ok(());
        };
        let tokens = shape::count_tokens(query, max);
        if tokens > max {
            // Counting stopped at the limit: say "more than".
            return Err(RequestError::Refused(
                http::StatusCode::BAD_REQUEST,
                GraphQLError::new(format!(
                    "The operation has more than {max} tokens, the most allowed. Simplify it \
                     or split it into several operations."
                ))
                .with_code(codes::MAX_TOKENS_EXCEEDED)
                .with_extension("limit", max.into())
                .with_extension("measured", tokens.into()),
            ));
        }
        Ok(())
    }

    /// The shape limits, checked on the parsed operation.
    pub(crate) fn check_shape(&self, measured: shape::Shape) -> Result<(), RequestError> {
        let checks = [
            (
                self.max_depth,
                measured.depth,
                codes::MAX_DEPTH_EXCEEDED,
                "levels of fields",
            ),
            (
                self.max_aliases,
                measured.aliases,
                codes::MAX_ALIASES_EXCEEDED,
                "aliases",
            ),
            (
                self.max_root_fields,
                measured.root_fields,
                codes::MAX_ROOT_FIELDS_EXCEEDED,
                "root fields",
            ),
            (
                self.max_directives,
                measured.directives,
                codes::MAX_DIRECTIVES_EXCEEDED,
                "directives",
            ),
        ];
        for (limit, value, code, what) in checks {
            if let Some(limit) = limit.filter(|limit| value > *limit) {
                return Err(refusal(code, what, limit.into(), value.into()));
            }
        }
        Ok(())
    }

    /// Whether any shape limit applies (measuring costs a walk of the operation).
    pub(crate) fn limits_shape(&self) -> bool {
        self.max_depth.is_some()
            || self.max_aliases.is_some()
            || self.max_root_fields.is_some()
            || self.max_directives.is_some()
    }

    /// The cost limit, checked with the request's variables.
    pub(crate) fn check_cost(&self, estimated: f64) -> Result<(), RequestError> {
        match self.max_cost {
            Some(max) if estimated > max => Err(RequestError::Refused(
                http::StatusCode::BAD_REQUEST,
                GraphQLError::new(format!(
                    "The operation's estimated cost is {estimated}; at most {max} is allowed. \
                     Ask for fewer items (smaller `first`) or fewer fields."
                ))
                .with_code(codes::COST_ESTIMATED_TOO_EXPENSIVE)
                .with_extension("limit", json!(max))
                .with_extension("measured", json!(estimated)),
            )),
            _ => Ok(()),
        }
    }
}

/// Whether a request asks for its cost (`"extensions": {"cost": true}`).
pub(crate) fn wants_cost(extensions: Option<&serde_json::Map<String, Value>>) -> bool {
    extensions
        .and_then(|e| e.get("cost"))
        .is_some_and(|v| v == &Value::Bool(true))
}
