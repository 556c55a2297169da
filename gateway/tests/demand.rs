//! Demand control: operations over a shape limit or an estimated cost are refused before
//! planning, naming the limit and the measured value; a client can ask for the estimated
//! and actual cost of what it ran.

mod common;

use common::{fixture, post_strict, start_configured};
use flowfleet_gateway::demand::DemandControl;
use flowfleet_gateway::GatewayConfig;
use serde_json::{json, Value};

/// The benchmark supergraph with demand-control directives: `topProducts` sliced by
/// `first`, a product's reviews assumed to be two, a price costing 3.
fn supergraph_with_costs() -> String {
    let sdl = fixture("supergraph.graphql")
        .replace(
            "topProducts(first: Int = 5): [Product] @join__field(graph: PRODUCTS)",
            "topProducts(first: Int = 5): [Product] @join__field(graph: PRODUCTS) \
             @listSize(slicingArguments: [\"first\"], assumedSize: 5)",
        )
        .replace(
            "    reviews: [Review] @join__field(graph: REVIEWS)\n}\n\ntype Query",
            "    reviews: [Review] @join__field(graph: REVIEWS) @listSize(assumedSize: 2)\n}\n\ntype Query",
        )
        .replace(
            "    price: Int\n        @join__field(graph: INVENTORY, external: true)\n        @join__field(graph: PRODUCTS)",
            "    price: Int\n        @join__field(graph: INVENTORY, external: true)\n        @join__field(graph: PRODUCTS) @cost(weight: 3)",
        );
    assert_eq!(sdl.matches("@listSize").count(), 2, "the fixture changed");
    assert_eq!(sdl.matches("@cost(").count(), 1, "the fixture changed");
    format!(
        "{sdl}\ndirective @cost(weight: Int!) on ARGUMENT_DEFINITION | ENUM | FIELD_DEFINITION | INPUT_FIELD_DEFINITION | OBJECT | SCALAR\n\
         directive @listSize(assumedSize: Int, slicingArguments: [String!], sizedFields: [String!], requireOneSlicingArgument: Boolean = true) on FIELD_DEFINITION\n"
    )
}

async fn gateway(demand: DemandControl, supergraph: &str) -> String {
    let config = GatewayConfig {
        demand,
        ..GatewayConfig::default()
    };
    start_configured(supergraph, config).await
}

/// Asserts a refusal with `code`, `limit` and `measured`.
fn assert_refused(answer: &(u16, Value), code: &str, limit: Value, measured: Value) {
    let (status, body) = answer;
    assert_eq!(*status, 400, "{body}");
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], code, "{body}");
    assert_eq!(error["extensions"]["limit"], limit, "{body}");
    assert_eq!(error["extensions"]["measured"], measured, "{body}");
    assert!(body.get("data").is_none(), "{body}");
}

#[tokio::test]
async fn each_shape_limit_refuses_with_the_limit_and_the_measured_value() {
    let limits = DemandControl {
        max_depth: Some(3),
        max_aliases: Some(1),
        max_root_fields: Some(2),
        max_directives: Some(1),
        ..DemandControl::default()
    };
    let base = gateway(limits, &fixture("supergraph.graphql")).await;
    // Within every limit.
    let (status, body) = post_strict(
        &base,
        json!({"query": "{ a: topProducts { reviews @include(if: true) { body } } me { id } }"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["a"].is_array(), "{body}");

    let deep = "{ topProducts { reviews { author { name } } } }";
    assert_refused(
        &post_strict(&base, json!({"query": deep})).await,
        "MAX_DEPTH_EXCEEDED",
        json!(3),
        json!(4),
    );
    // A fragment counts where it is spread.
    let aliased =
        "{ ...Twice } fragment Twice on Query { a: topProducts { upc } b: topProducts { upc } }";
    assert_refused(
        &post_strict(&base, json!({"query": aliased})).await,
        "MAX_ALIASES_EXCEEDED",
        json!(1),
        json!(2),
    );
    let wide = "{ me { id } users { id } topProducts { upc } }";
    assert_refused(
        &post_strict(&base, json!({"query": wide})).await,
        "MAX_ROOT_FIELDS_EXCEEDED",
        json!(2),
        json!(3),
    );
    let directives = "{ me @include(if: true) { id @skip(if: false) } }";
    assert_refused(
        &post_strict(&base, json!({"query": directives})).await,
        "MAX_DIRECTIVES_EXCEEDED",
        json!(1),
        json!(2),
    );
}

#[tokio::test]
async fn the_token_limit_is_checked_before_parsing() {
    let limits = DemandControl {
        max_tokens: Some(12),
        ..DemandControl::default()
    };
    let base = gateway(limits, &fixture("supergraph.graphql")).await;
    // `{ topProducts ( first : 1 ) { upc } }`: 10 tokens.
    let (status, body) =
        post_strict(&base, json!({"query": "{ topProducts(first: 1) { upc } }"})).await;
    assert_eq!(status, 200, "{body}");
    // The benchmark query has hundreds; counting stops just past the limit. It would not
    // even parse: the limit answers first.
    let (status, body) = post_strict(
        &base,
        json!({"query": format!("{} {{", fixture("query.graphql"))}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "MAX_TOKENS_EXCEEDED"
    );
    assert_eq!(body["errors"][0]["extensions"]["limit"], 12);
    assert_eq!(body["errors"][0]["extensions"]["measured"], 13);
}

const PRODUCTS: &str =
    "query P($n: Int) { topProducts(first: $n) { name price reviews { body } } }";

#[tokio::test]
async fn the_estimated_cost_follows_cost_and_list_size_and_the_variables() {
    let limits = DemandControl {
        max_cost: Some(10.0),
        ..DemandControl::default()
    };
    let base = gateway(limits, &supergraph_with_costs()).await;
    // Per product: 1 (an object) + 3 (price) + 2 reviews × 1; two products: 12.
    assert_refused(
        &post_strict(&base, json!({"query": PRODUCTS, "variables": {"n": 2}})).await,
        "COST_ESTIMATED_TOO_EXPENSIVE",
        json!(10.0),
        json!(12.0),
    );
    // No `first`: the assumed five, 30.
    assert_refused(
        &post_strict(&base, json!({"query": PRODUCTS})).await,
        "COST_ESTIMATED_TOO_EXPENSIVE",
        json!(10.0),
        json!(30.0),
    );
    // One product: 6, allowed; asked for, the cost comes back in `extensions`.
    let (status, body) = post_strict(
        &base,
        json!({"query": PRODUCTS, "variables": {"n": 1}, "extensions": {"cost": true}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let products = body["data"]["topProducts"].as_array().unwrap();
    assert_eq!(products.len(), 1, "{body}");
    // What the answer holds: the product, its price if any, each review it has.
    let actual: f64 = products
        .iter()
        .map(|p| {
            1.0 + if p["price"].is_null() { 0.0 } else { 3.0 }
                + p["reviews"].as_array().map_or(0, Vec::len) as f64
        })
        .sum();
    assert_eq!(
        body["extensions"]["cost"],
        json!({"estimated": 6.0, "actual": actual, "max": 10.0}),
        "{body}"
    );
    // Without asking, no extensions.
    let (_, body) = post_strict(&base, json!({"query": PRODUCTS, "variables": {"n": 1}})).await;
    assert!(body.get("extensions").is_none(), "{body}");
}
