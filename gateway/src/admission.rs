//! Admission: everything that can refuse or reshape a request before anything is fetched
//! (parse, validation and planning through the cache, the method and introspection
//! rules, what the caller may see, variables, the estimated cost), and what it adds to the
//! response afterwards (authorization errors, the cost report).

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::authorization::{self, Filtered};
use crate::demand::cost::Costing;
use crate::error::{GraphQLError, RequestError};
use crate::gateway::{Gateway, GatewayConfig, Method, ResponseJson, Supergraph};
use crate::operation::{coerce_variables, OperationKind, PreparedOperation};
use crate::request::GraphQLRequest;

/// A request that passed every check, ready to execute.
pub(crate) struct Admitted {
    pub supergraph: Arc<Supergraph>,
    pub operation: Arc<PreparedOperation>,
    pub variables: Map<String, Value>,
    /// The estimated cost, when a limit or the client asked for it.
    pub estimated_cost: Option<f64>,
    /// Fields the caller may not see, taken out of `operation`: one error each.
    pub denied: Vec<GraphQLError>,
    /// Whether nothing of the operation was left to run.
    pub nothing_left: bool,
}

impl Admitted {
    /// Refuses an operation that cannot leave fields out as it goes (a subscription, an
    /// incremental delivery) when the caller may not see some of them.
    pub fn whole_or_refused(&self) -> Result<(), RequestError> {
        match self.denied.first() {
            None => Ok(()),
            Some(error) => {
                let status = match error.code() {
                    Some("UNAUTHENTICATED") => http::StatusCode::UNAUTHORIZED,
                    _ => http::StatusCode::FORBIDDEN,
                };
                Err(RequestError::Refused(status, error.clone()))
            }
        }
    }
}

impl Gateway {
    /// Everything that can refuse a request before anything is fetched: parse, validation,
    /// planning (cached), what the caller may see, method and introspection rules,
    /// variable coercion, the estimated cost.
    pub(crate) fn admit(
        &self,
        req: &GraphQLRequest,
        method: Method,
    ) -> Result<Admitted, RequestError> {
        let config = self.config();
        // This request's supergraph, whatever reloads happen while it runs.
        let supergraph = self.current();
        if req.query.trim().is_empty() {
            return Err(RequestError::BadRequest("The request has no query.".into()));
        }
        let mut operation = Self::prepared(&supergraph, &req.query, req.operation_name.as_deref())?;
        let mut denied = Vec::new();
        let mut nothing_left = false;
        if !supergraph.access.is_empty() {
            let filtered = self.filter(&supergraph, req, &operation.root_type)?;
            match &filtered.query {
                // Nothing to run: the response is the errors alone.
                _ if filtered.empty => {}
                Some(query) => {
                    operation = Self::prepared(&supergraph, query, req.operation_name.as_deref())?;
                }
                None => {}
            }
            denied = filtered.errors.clone();
            nothing_left = filtered.empty;
        }
        if method == Method::Get && operation.kind == OperationKind::Mutation {
            return Err(RequestError::MutationOverGet);
        }
        if operation.uses_introspection && !config.introspection {
            return Err(RequestError::IntrospectionDisabled);
        }
        let variables = coerce_variables(&operation.variables, req.variables.as_ref())?;
        let estimated_cost = if config.demand.max_cost.is_some()
            || crate::demand::wants_cost(req.extensions.as_ref())
        {
            let estimated = Self::costing(&supergraph, &operation, &variables, config).estimate(
                &operation.root_type,
                &operation.selection_set,
                operation.kind == OperationKind::Mutation,
            );
            config.demand.check_cost(estimated)?;
            Some(estimated)
        } else {
            None
        };
        Ok(Admitted {
            supergraph,
            operation,
            variables,
            estimated_cost,
            denied,
            nothing_left,
        })
    }

    /// The request's operation with what this request's caller may not see taken out.
    fn filter(
        &self,
        supergraph: &Supergraph,
        req: &GraphQLRequest,
        root: &str,
    ) -> Result<Arc<Filtered>, RequestError> {
        let access = authorization::current();
        let key = (req.query.clone(), req.operation_name.clone(), access);
        if let Some(filtered) = supergraph.filtered.get(&key) {
            return Ok(filtered);
        }
        // Parsed again: the operation validated, so this cannot fail.
        let document = graphql_tools::parser::parse_query::<String>(&req.query)
            .map_err(|_| RequestError::Internal)?
            .into_static();
        let filtered = Arc::new(authorization::filter(
            &supergraph.access,
            &supergraph.model,
            self.config().policy.as_ref(),
            &key.2,
            &document,
            root,
            req.operation_name.as_deref(),
        ));
        supergraph.filtered.insert(key, filtered.clone());
        Ok(filtered)
    }

    fn costing<'a>(
        supergraph: &'a Supergraph,
        operation: &'a PreparedOperation,
        variables: &'a Map<String, Value>,
        config: &GatewayConfig,
    ) -> Costing<'a> {
        Costing {
            costs: &supergraph.costs,
            schema: &supergraph.model,
            fragments: &operation.fragments,
            variables,
            default_list_size: config.demand.default_list_size,
        }
    }

    /// Adds `extensions.cost` (estimated, actual, max) to an executed response.
    pub(crate) fn report_cost(&self, admitted: &Admitted, response: &mut ResponseJson) {
        let Ok(body) = serde_json::from_slice::<Value>(&response.body) else {
            return;
        };
        let operation = &admitted.operation;
        let actual = Self::costing(
            &admitted.supergraph,
            operation,
            &admitted.variables,
            self.config(),
        )
        .actual(
            &operation.root_type,
            &operation.selection_set,
            body.get("data").unwrap_or(&Value::Null),
            operation.kind == OperationKind::Mutation,
        );
        let cost = serde_json::json!({
            "estimated": admitted.estimated_cost,
            "actual": actual,
            "max": self.config().demand.max_cost,
        });
        // The body ends with `}`: the extensions go just before it.
        if response.body.last() == Some(&b'}') {
            response.body.pop();
            response
                .body
                .extend_from_slice(b",\"extensions\":{\"cost\":");
            let _ = serde_json::to_writer(&mut response.body, &cost);
            response.body.extend_from_slice(b"}}");
        }
    }
}

/// Adds `errors` to a response body `{"data":..}` or `{"data":..,"errors":[..]}`.
pub(crate) fn append_errors(body: &mut Vec<u8>, has_errors: bool, errors: &[GraphQLError]) {
    if errors.is_empty() || body.last() != Some(&b'}') {
        return;
    }
    body.pop();
    if has_errors && body.last() == Some(&b']') {
        body.pop();
        for error in errors {
            body.push(b',');
            let _ = serde_json::to_writer(&mut *body, error);
        }
        body.extend_from_slice(b"]}");
    } else {
        body.extend_from_slice(b",\"errors\":");
        let _ = serde_json::to_writer(&mut *body, errors);
        body.push(b'}');
    }
}
