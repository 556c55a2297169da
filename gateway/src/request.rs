//! The client's GraphQL request, as sent in a POST body or GET query string.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::RequestError;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GraphQLRequest {
    pub query: String,
    #[serde(
        rename = "operationName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub operation_name: Option<String>,
    /// `null` and absent are both accepted and mean "no variables".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
}

impl GraphQLRequest {
    pub fn new(query: impl Into<String>) -> Self {
        Self {
            query: query.into(),
            ..Self::default()
        }
    }

    pub fn with_operation_name(mut self, name: impl Into<String>) -> Self {
        self.operation_name = Some(name.into());
        self
    }

    pub fn with_variables(mut self, variables: Map<String, Value>) -> Self {
        self.variables = Some(variables);
        self
    }
}

impl GraphQLRequest {
    /// Reads a request from a decoded JSON body, with a message naming the parameter that is
    /// wrong (GraphQL-over-HTTP: `query` a string; `operationName` a string or null;
    /// `variables` and `extensions` maps or null).
    pub fn from_json(value: Value) -> Result<Self, RequestError> {
        let Value::Object(mut object) = value else {
            return Err(RequestError::BadRequest(
                "A GraphQL request must be a JSON object with a `query` string.".into(),
            ));
        };
        let persisted = object
            .get("extensions")
            .and_then(|e| e.get("persistedQuery"))
            .is_some();
        let query = match object.remove("query") {
            Some(Value::String(query)) => query,
            // A persisted query names its text by hash (see `persisted`).
            None | Some(Value::Null) if persisted => String::new(),
            None | Some(Value::Null) => {
                return Err(RequestError::BadRequest(
                    "The request has no `query` parameter.".into(),
                ))
            }
            Some(_) => {
                return Err(RequestError::BadRequest(
                    "The `query` parameter must be a string.".into(),
                ))
            }
        };
        let operation_name = match object.remove("operationName") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => Some(name).filter(|n| !n.is_empty()),
            Some(_) => {
                return Err(RequestError::BadRequest(
                    "The `operationName` parameter must be a string or null.".into(),
                ))
            }
        };
        let map = |value: Option<Value>, name: &str| match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(_) => Err(RequestError::BadRequest(format!(
                "The `{name}` parameter must be a map or null."
            ))),
        };
        Ok(Self {
            query,
            operation_name,
            variables: map(object.remove("variables"), "variables")?,
            extensions: map(object.remove("extensions"), "extensions")?,
        })
    }
}

/// A POST body: one request, or a batch (a JSON array) answered with an array.
#[derive(Debug)]
pub enum Incoming {
    Single(Result<GraphQLRequest, RequestError>),
    Batch(Vec<Result<GraphQLRequest, RequestError>>),
}

impl Incoming {
    pub fn from_json(value: Value) -> Self {
        match value {
            Value::Array(items) => {
                Incoming::Batch(items.into_iter().map(GraphQLRequest::from_json).collect())
            }
            other => Incoming::Single(GraphQLRequest::from_json(other)),
        }
    }
}
