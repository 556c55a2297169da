//! The four subgraphs of the standard federation benchmark, with async-graphql 7 federation.

use async_graphql::{
    ComplexObject, Context, EmptyMutation, EmptySubscription, Object, Schema, SimpleObject,
    Subscription, ID,
};
use futures::Stream;

use crate::data;

// ---------- accounts ----------

#[derive(SimpleObject, Clone)]
pub struct User {
    pub id: ID,
    pub name: Option<String>,
    pub username: Option<String>,
    pub birthday: Option<i32>,
}

fn account(row: &data::UserRow) -> User {
    User {
        id: ID(row.id.to_string()),
        name: Some(row.name.to_string()),
        username: Some(row.username.to_string()),
        birthday: Some(row.birthday),
    }
}

pub struct AccountsQuery;

#[Object(name = "Query")]
impl AccountsQuery {
    async fn me(&self) -> Option<User> {
        data::USERS.first().map(account)
    }
    async fn user(&self, id: ID) -> Option<User> {
        data::user(&id).map(account)
    }
    async fn users(&self) -> Option<Vec<Option<User>>> {
        Some(data::USERS.iter().map(|u| Some(account(u))).collect())
    }
    #[graphql(entity)]
    async fn find_user_by_id(&self, id: ID) -> Option<User> {
        data::user(&id).map(account)
    }
}

pub type AccountsSchema = Schema<AccountsQuery, EmptyMutation, EmptySubscription>;

pub fn accounts() -> AccountsSchema {
    Schema::build(AccountsQuery, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

// ---------- products ----------

#[derive(SimpleObject, Clone)]
pub struct Product {
    pub upc: String,
    pub name: Option<String>,
    pub price: Option<i32>,
    pub weight: Option<i32>,
}

fn product(row: &data::ProductRow) -> Product {
    Product {
        upc: row.upc.to_string(),
        name: Some(row.name.to_string()),
        price: Some(row.price),
        weight: Some(row.weight),
    }
}

pub struct ProductsQuery;

#[Object(name = "Query")]
impl ProductsQuery {
    async fn top_products(
        &self,
        #[graphql(default = 5)] first: i32,
    ) -> Option<Vec<Option<Product>>> {
        let n = usize::try_from(first).unwrap_or(0);
        Some(
            data::PRODUCTS
                .iter()
                .take(n)
                .map(|p| Some(product(p)))
                .collect(),
        )
    }
    #[graphql(entity)]
    async fn find_product_by_upc(&self, upc: String) -> Option<Product> {
        data::product(&upc).map(product)
    }
}

pub type ProductsSchema = Schema<ProductsQuery, EmptyMutation, EmptySubscription>;

pub fn products() -> ProductsSchema {
    Schema::build(ProductsQuery, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

// ---------- inventory ----------

#[derive(SimpleObject, Clone)]
#[graphql(name = "Product", complex)]
pub struct InventoryProduct {
    pub upc: String,
    #[graphql(external)]
    pub price: Option<i32>,
    #[graphql(external)]
    pub weight: Option<i32>,
}

#[ComplexObject]
impl InventoryProduct {
    async fn in_stock(&self) -> Option<bool> {
        Some(data::in_stock(&self.upc))
    }
    #[graphql(requires = "price weight")]
    async fn shipping_estimate(&self) -> Option<i32> {
        Some(data::shipping_estimate(self.price?, self.weight?))
    }
}

pub struct InventoryQuery;

#[Object(name = "Query")]
impl InventoryQuery {
    #[graphql(entity)]
    async fn find_product_by_upc(
        &self,
        #[graphql(key)] upc: String,
        price: Option<i32>,
        weight: Option<i32>,
    ) -> InventoryProduct {
        InventoryProduct { upc, price, weight }
    }
}

pub type InventorySchema = Schema<InventoryQuery, EmptyMutation, EmptySubscription>;

pub fn inventory() -> InventorySchema {
    Schema::build(InventoryQuery, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}

// ---------- reviews ----------

#[derive(Clone)]
pub struct Review {
    row: &'static data::ReviewRow,
    /// When a subscription emitted this review (microseconds since the Unix epoch).
    emitted_at_us: Option<f64>,
}

impl Review {
    fn stored(row: &'static data::ReviewRow) -> Self {
        Review {
            row,
            emitted_at_us: None,
        }
    }
}

#[Object]
impl Review {
    /// When `reviewAdded` emitted this review, in microseconds since the Unix epoch; null
    /// outside subscriptions. Lets a benchmark measure delivery latency end to end.
    async fn emitted_at(&self) -> Option<f64> {
        self.emitted_at_us
    }
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }
    async fn body(&self) -> Option<String> {
        Some(self.row.body.to_string())
    }
    #[graphql(provides = "username")]
    async fn author(&self) -> Option<ReviewUser> {
        Some(ReviewUser {
            id: ID(self.row.author.to_string()),
        })
    }
    async fn product(&self) -> Option<ReviewProduct> {
        Some(ReviewProduct {
            upc: self.row.product.to_string(),
        })
    }
}

pub struct ReviewUser {
    id: ID,
}

#[Object(name = "User")]
impl ReviewUser {
    async fn id(&self) -> &ID {
        &self.id
    }
    #[graphql(external)]
    async fn username(&self) -> Option<String> {
        data::user(&self.id).map(|u| u.username.to_string())
    }
    async fn reviews(&self) -> Option<Vec<Option<Review>>> {
        Some(
            data::REVIEWS
                .iter()
                .filter(|r| r.author == self.id.as_str())
                .map(|row| Some(Review::stored(row)))
                .collect(),
        )
    }
}

pub struct ReviewProduct {
    upc: String,
}

#[Object(name = "Product")]
impl ReviewProduct {
    async fn upc(&self) -> &str {
        &self.upc
    }
    async fn reviews(&self) -> Option<Vec<Option<Review>>> {
        Some(
            data::REVIEWS
                .iter()
                .filter(|r| r.product == self.upc)
                .map(|row| Some(Review::stored(row)))
                .collect(),
        )
    }
}

pub struct ReviewsQuery;

#[Object(name = "Query")]
impl ReviewsQuery {
    #[graphql(entity)]
    async fn find_user_by_id(&self, id: ID) -> ReviewUser {
        ReviewUser { id }
    }
    #[graphql(entity)]
    async fn find_product_by_upc(&self, upc: String) -> ReviewProduct {
        ReviewProduct { upc }
    }
    #[graphql(entity)]
    async fn find_review_by_id(&self, _ctx: &Context<'_>, id: ID) -> Option<Review> {
        data::REVIEWS
            .iter()
            .find(|r| r.id == id.as_str())
            .map(Review::stored)
    }
}

pub struct ReviewsSubscription;

#[Subscription(name = "Subscription")]
impl ReviewsSubscription {
    /// A review every `everyMs` milliseconds (cycling through the stored reviews), stamped
    /// with when it was emitted; `count` ends the stream after that many (none: endless).
    async fn review_added(
        &self,
        #[graphql(default = 1000)] every_ms: i32,
        count: Option<i32>,
    ) -> impl Stream<Item = Review> {
        let every = std::time::Duration::from_millis(every_ms.max(1) as u64);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let limit = count.map_or(u64::MAX, |c| c.max(0) as u64);
        futures::stream::unfold((ticks, 0u64), move |(mut ticks, n)| async move {
            if n >= limit {
                return None;
            }
            ticks.tick().await;
            let row = &data::REVIEWS[(n as usize) % data::REVIEWS.len()];
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let review = Review {
                row,
                emitted_at_us: Some(now.as_micros() as f64),
            };
            Some((review, (ticks, n + 1)))
        })
    }
}

pub type ReviewsSchema = Schema<ReviewsQuery, EmptyMutation, ReviewsSubscription>;

pub fn reviews() -> ReviewsSchema {
    Schema::build(ReviewsQuery, EmptyMutation, ReviewsSubscription)
        .enable_federation()
        .enable_subscription_in_federation()
        .finish()
}
