//! The reference result of the benchmark query, computed directly from the data (not through
//! any gateway), so that every gateway's answer can be checked against it.

use serde_json::{json, Value};

use crate::data;

fn user_fields(u: &data::UserRow) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), json!(u.id));
    m.insert("username".into(), json!(u.username));
    m.insert("name".into(), json!(u.name));
    m
}

fn review_fields(r: &data::ReviewRow) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), json!(r.id));
    m.insert("body".into(), json!(r.body));
    m
}

fn product_fields(p: &data::ProductRow) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("inStock".into(), json!(data::in_stock(p.upc)));
    m.insert("name".into(), json!(p.name));
    m.insert("price".into(), json!(p.price));
    m.insert(
        "shippingEstimate".into(),
        json!(data::shipping_estimate(p.price, p.weight)),
    );
    m.insert("upc".into(), json!(p.upc));
    m.insert("weight".into(), json!(p.weight));
    m
}

fn reviews_by_author(id: &str) -> impl Iterator<Item = &'static data::ReviewRow> + '_ {
    data::REVIEWS.iter().filter(move |r| r.author == id)
}

fn reviews_of_product(upc: &str) -> impl Iterator<Item = &'static data::ReviewRow> + '_ {
    data::REVIEWS.iter().filter(move |r| r.product == upc)
}

/// `author { ...User reviews { ...Review product { ...Product } } }`
fn author_block(r: &data::ReviewRow) -> Value {
    let u = data::user(r.author).expect("author");
    let mut m = user_fields(u);
    let reviews: Vec<Value> = reviews_by_author(u.id)
        .map(|r2| {
            let mut rm = review_fields(r2);
            rm.insert(
                "product".into(),
                Value::Object(product_fields(data::product(r2.product).expect("product"))),
            );
            Value::Object(rm)
        })
        .collect();
    m.insert("reviews".into(), Value::Array(reviews));
    Value::Object(m)
}

/// `reviews { ...Review author { ... } }` of a product.
fn product_reviews_block(p: &data::ProductRow) -> Value {
    Value::Array(
        reviews_of_product(p.upc)
            .map(|r| {
                let mut rm = review_fields(r);
                rm.insert("author".into(), author_block(r));
                Value::Object(rm)
            })
            .collect(),
    )
}

/// Expected response of the benchmark query (`QUERY`) with `topProducts` default `first: 5`.
pub fn expected_response() -> Value {
    let users: Vec<Value> = data::USERS
        .iter()
        .map(|u| {
            let mut m = user_fields(u);
            let reviews: Vec<Value> = reviews_by_author(u.id)
                .map(|r| {
                    let mut rm = review_fields(r);
                    let p = data::product(r.product).expect("product");
                    let mut pm = product_fields(p);
                    pm.insert("reviews".into(), product_reviews_block(p));
                    rm.insert("product".into(), Value::Object(pm));
                    Value::Object(rm)
                })
                .collect();
            m.insert("reviews".into(), Value::Array(reviews));
            Value::Object(m)
        })
        .collect();
    let top: Vec<Value> = data::PRODUCTS
        .iter()
        .take(5)
        .map(|p| {
            let mut pm = product_fields(p);
            pm.insert("reviews".into(), product_reviews_block(p));
            Value::Object(pm)
        })
        .collect();
    json!({"data": {"users": users, "topProducts": top}})
}
