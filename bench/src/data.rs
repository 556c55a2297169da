//! Deterministic data of the four benchmark subgraphs, shared by the subgraphs themselves and
//! by the reference computation of expected responses.

pub struct UserRow {
    pub id: &'static str,
    pub name: &'static str,
    pub username: &'static str,
    pub birthday: i32,
}

pub struct ProductRow {
    pub upc: &'static str,
    pub name: &'static str,
    pub price: i32,
    pub weight: i32,
}

pub struct ReviewRow {
    pub id: &'static str,
    pub body: &'static str,
    pub author: &'static str,
    pub product: &'static str,
}

pub const USERS: &[UserRow] = &[
    UserRow {
        id: "1",
        name: "Ada Lovelace",
        username: "ada",
        birthday: 1815,
    },
    UserRow {
        id: "2",
        name: "Alan Turing",
        username: "alan",
        birthday: 1912,
    },
    UserRow {
        id: "3",
        name: "Grace Hopper",
        username: "grace",
        birthday: 1906,
    },
    UserRow {
        id: "4",
        name: "Edsger Dijkstra",
        username: "edsger",
        birthday: 1930,
    },
];

pub const PRODUCTS: &[ProductRow] = &[
    ProductRow {
        upc: "1",
        name: "Table",
        price: 899,
        weight: 100,
    },
    ProductRow {
        upc: "2",
        name: "Couch",
        price: 1299,
        weight: 1000,
    },
    ProductRow {
        upc: "3",
        name: "Glass",
        price: 15,
        weight: 20,
    },
    ProductRow {
        upc: "4",
        name: "Chair",
        price: 499,
        weight: 80,
    },
    ProductRow {
        upc: "5",
        name: "Lamp",
        price: 45,
        weight: 5,
    },
    ProductRow {
        upc: "6",
        name: "Shelf",
        price: 150,
        weight: 40,
    },
];

pub const REVIEWS: &[ReviewRow] = &[
    ReviewRow {
        id: "1",
        body: "Love it!",
        author: "1",
        product: "1",
    },
    ReviewRow {
        id: "2",
        body: "Too expensive.",
        author: "1",
        product: "2",
    },
    ReviewRow {
        id: "3",
        body: "Could be better.",
        author: "2",
        product: "3",
    },
    ReviewRow {
        id: "4",
        body: "Prefer something else.",
        author: "2",
        product: "1",
    },
    ReviewRow {
        id: "5",
        body: "Sturdy.",
        author: "3",
        product: "4",
    },
    ReviewRow {
        id: "6",
        body: "Bright enough.",
        author: "4",
        product: "5",
    },
    ReviewRow {
        id: "7",
        body: "Holds my books.",
        author: "3",
        product: "6",
    },
];

pub fn user(id: &str) -> Option<&'static UserRow> {
    USERS.iter().find(|u| u.id == id)
}

pub fn product(upc: &str) -> Option<&'static ProductRow> {
    PRODUCTS.iter().find(|p| p.upc == upc)
}

/// Inventory: odd UPCs are in stock.
pub fn in_stock(upc: &str) -> bool {
    upc.parse::<u32>().map(|n| n % 2 == 1).unwrap_or(false)
}

/// Inventory's `@requires(fields: "price weight")` computation.
pub fn shipping_estimate(price: i32, weight: i32) -> i32 {
    if price > 1000 {
        0
    } else {
        weight / 2
    }
}
