//! The database handle every service's store uses.
//!
//! One code path for both runtimes: stores write portable SQL against
//! [`sqlx::AnyPool`] with `$1`-style parameters (which SQLite also accepts).
//! Ids are UUIDv7 text, times are milliseconds since the epoch (`BIGINT`), JSON
//! documents are text. A service's migrations are one set of portable DDL
//! ([`Migrations::portable`]) until a backend needs its own (say, PostgreSQL
//! partitioning), when it ships one set per backend.
//!
//! Isolation between services: in PostgreSQL every service lives in its own
//! schema (named after the service) and its connections set `search_path` to
//! it, so unqualified table names can only reach the service's own tables. In
//! embedded mode every service has its own SQLite file.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid database configuration: {0}")]
    Config(String),
}

/// A service's connection pool, its backend and its schema.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    schema: String,
}

/// The migration sets a service ships, one per backend.
pub struct Migrations {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

impl Migrations {
    /// The same DDL for both backends.
    pub const fn portable(migrator: &'static Migrator) -> Migrations {
        Migrations {
            sqlite: migrator,
            postgres: migrator,
        }
    }
}

fn valid_schema_name(schema: &str) -> bool {
    !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Db {
    /// Opens (creating if missing) `<data_dir>/<service>.db`.
    pub async fn sqlite(data_dir: &Path, service: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        std::fs::create_dir_all(data_dir).map_err(|e| {
            DbError::Config(format!(
                "cannot create data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(format!("{service}.db"));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            // SQLite has one writer; a small pool with a busy timeout avoids
            // `database is locked` without serialising readers.
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=10000; \
                         PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Db {
            pool,
            backend: Backend::Sqlite,
            schema: service.to_string(),
        })
    }

    /// Connects to PostgreSQL with `search_path` set to `schema`. The schema is
    /// created if missing (when the role may), so a fresh database just works.
    pub async fn postgres(url: &str, schema: &str, max_connections: u32) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        if !valid_schema_name(schema) {
            return Err(DbError::Config(format!("invalid schema name `{schema}`")));
        }
        let options = AnyConnectOptions::from_str(url)?;
        let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
        {
            let mut conn = sqlx::AnyConnection::connect_with(&options).await?;
            // Racing creators (several services migrating at once) may collide on
            // the catalog's unique index; the schema exists either way.
            if let Err(e) = conn.execute(create.as_str()).await {
                let exists: Option<(i32,)> = sqlx::query_as(
                    "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1",
                )
                .bind(schema)
                .fetch_optional(&mut conn)
                .await?;
                if exists.is_none() {
                    return Err(e.into());
                }
            }
        }
        let set_path = format!("SET search_path TO \"{schema}\"");
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                let set_path = set_path.clone();
                Box::pin(async move {
                    conn.execute(set_path.as_str()).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Db {
            pool,
            backend: Backend::Postgres,
            schema: schema.to_string(),
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Applies the service's migrations for this backend.
    #[tracing::instrument(skip_all, fields(schema = %self.schema))]
    pub async fn migrate(&self, migrations: &Migrations) -> Result<(), DbError> {
        let migrator = match self.backend {
            Backend::Sqlite => migrations.sqlite,
            Backend::Postgres => migrations.postgres,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Whether the database answers (for readiness probes).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

use sqlx::Connection;

/// `%word%` for `LIKE … ESCAPE '\'`, with the pattern characters escaped.
pub fn like_pattern(word: &str) -> String {
    let escaped = word
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// One page of a keyset-paginated list, newest first.
pub struct Page<T> {
    pub items: Vec<T>,
    /// More rows follow the last item.
    pub has_next: bool,
    /// Rows matching the filter, on all pages.
    pub total: i64,
}

impl<T> Page<T> {
    /// A page from up to `first + 1` rows fetched (the extra one, if there,
    /// only says that more follow).
    pub fn cut(mut items: Vec<T>, first: i64, total: i64) -> Page<T> {
        let has_next = items.len() as i64 > first;
        items.truncate(first.max(0) as usize);
        Page {
            items,
            has_next,
            total,
        }
    }
}

impl Db {
    /// Up to `first` rows of `table` whose `filter_column` is `filter`, newest
    /// (highest UUIDv7 id) first, after the cursor `after` (an id). `table`,
    /// `columns` and `filter_column` are the caller's static SQL, never input.
    #[allow(clippy::too_many_arguments)]
    pub async fn page_newest_first<T>(
        &self,
        table: &str,
        columns: &str,
        filter_column: &str,
        filter: uuid::Uuid,
        first: i64,
        after: Option<uuid::Uuid>,
        decode: impl Fn(&sqlx::any::AnyRow) -> Result<T, crate::error::ApiError>,
    ) -> Result<Page<T>, crate::error::ApiError> {
        use sqlx::Row;
        let rows = sqlx::query(&format!(
            "SELECT {columns} FROM {table} WHERE {filter_column} = $1 AND ($2 = '' OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(filter.to_string())
        // No cursor: the empty string disables the condition (no sentinel whose
        // order against the ids depends on the collation).
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(first + 1)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM {table} WHERE {filter_column} = $1"
        ))
        .bind(filter.to_string())
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let items = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::cut(items, first, total))
    }
}

/// Reads a UUID stored as text (ids are UUIDv7 text on both backends). A value
/// that does not parse is a corrupt row: an internal error, logged, not shown.
pub fn uuid_column(
    row: &sqlx::any::AnyRow,
    column: &str,
) -> Result<uuid::Uuid, crate::error::ApiError> {
    use sqlx::Row;
    row.try_get::<String, _>(column)?
        .parse()
        .map_err(crate::error::ApiError::internal)
}

/// Reads a nullable UUID column, as [`uuid_column`] reads a required one.
pub fn optional_uuid_column(
    row: &sqlx::any::AnyRow,
    column: &str,
) -> Result<Option<uuid::Uuid>, crate::error::ApiError> {
    use sqlx::Row;
    row.try_get::<Option<String>, _>(column)?
        .map(|s| s.parse().map_err(crate::error::ApiError::internal))
        .transpose()
}

/// Is this error a unique-constraint violation (same meaning on both backends)?
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db.code().as_deref() == Some("23505")
                || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}
