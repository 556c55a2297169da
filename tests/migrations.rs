//! Migration parity: every service's migrations, applied to SQLite and to PostgreSQL, leave
//! the same schema behind: the same tables; the same columns in each, with the same type
//! (mapped: SQLite's declared type and PostgreSQL's `data_type` fall into one family),
//! nullability, primary key and default; and the same indexes (columns in order, unique or
//! not, partial or not). A service whose two sets drift fails here, named with the
//! difference, instead of in production on the backend nobody tried.
//!
//! Needs PostgreSQL (`scripts/test` starts it); without it the test says so and passes,
//! unless `FLOWFLEET_TEST_REQUIRE_INFRA` is set.

use std::collections::BTreeMap;

use flowfleet_host::testing::Backend;
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::db::Db;
use sqlx::Row as _;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Column {
    family: &'static str,
    not_null: bool,
    primary_key: bool,
    default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Index {
    table: String,
    columns: Vec<String>,
    unique: bool,
    partial: bool,
}

/// What a schema holds, in a form both backends can be compared in.
#[derive(Debug, Default, PartialEq, Eq)]
struct Schema {
    /// table → column → its description
    tables: BTreeMap<String, BTreeMap<String, Column>>,
    /// Indexes, primary keys' own excepted; named by what they index, since the names of
    /// the indexes a UNIQUE constraint makes differ between backends.
    indexes: Vec<Index>,
}

/// Differences that are meant, each with its reason; anything else is drift.
const INTENDED: &[(&str, &str)] = &[
    // PostgreSQL partitions executions by month (0002): a partitioned table's keys must
    // hold the partition key, so its primary key is (id, created_at) with a plain index on
    // id, where SQLite keeps (id). The partitions themselves are left out above.
    (
        "execution: executions.created_at: SQLite Some(Column { family: \"integer\", not_null: true, primary_key: false, default: None }), PostgreSQL Some(Column { family: \"integer\", not_null: true, primary_key: true, default: None })",
        "PostgreSQL's primary key holds the partition key",
    ),
    (
        "execution: index only in PostgreSQL: Index { table: \"executions\", columns: [\"id\"], unique: false, partial: false }",
        "PostgreSQL finds an execution by id without its month through this index",
    ),
    // For the same reason the idempotency rule moved to `execution_keys` on both
    // backends (0002); SQLite's executions table keeps its old UNIQUE constraint, since
    // removing one means rebuilding the table, and it can never refuse what
    // `execution_keys` lets through.
    (
        "execution: index only in SQLite: Index { table: \"executions\", columns: [\"workflow_id\", \"idempotency_key\"], unique: true, partial: false }",
        "SQLite keeps the constraint `execution_keys` replaced",
    ),
];

/// The family a declared (SQLite) or reported (PostgreSQL) type belongs to.
fn family(declared: &str) -> &'static str {
    let t = declared.to_ascii_lowercase();
    if t.contains("int") {
        "integer"
    } else if t.contains("char") || t.contains("text") || t == "uuid" {
        "text"
    } else if t.contains("bool") {
        "boolean"
    } else if t.contains("real") || t.contains("double") || t.contains("float") || t == "numeric" {
        "real"
    } else if t.contains("blob") || t == "bytea" {
        "blob"
    } else {
        panic!("a column type neither backend family covers: `{declared}`; extend family()")
    }
}

/// A default as written, without PostgreSQL's casts, quotes or parentheses.
fn normal_default(default: Option<String>) -> Option<String> {
    default.map(|d| {
        let d = d.split("::").next().unwrap_or("").trim();
        d.trim_matches(|c| c == '(' || c == ')' || c == '\'')
            .to_string()
    })
}

const INTERNAL_TABLES: [&str; 1] = ["_sqlx_migrations"];

async fn sqlite_schema(db: &Db) -> Schema {
    let pool = db.pool();
    let mut schema = Schema::default();
    let tables: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(pool)
    .await
    .expect("listing SQLite tables")
    .iter()
    .map(|r| r.get::<String, _>(0))
    .filter(|t| !INTERNAL_TABLES.contains(&t.as_str()))
    .collect();
    for table in tables {
        let mut columns = BTreeMap::new();
        for row in
            sqlx::query("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?)")
                .bind(&table)
                .fetch_all(pool)
                .await
                .expect("reading SQLite columns")
        {
            let primary_key = row.get::<i64, _>(4) > 0;
            columns.insert(
                row.get::<String, _>(0),
                Column {
                    family: family(&row.get::<String, _>(1)),
                    // SQLite lets a PRIMARY KEY column hold NULL unless it says NOT NULL;
                    // PostgreSQL makes it NOT NULL: compare what PostgreSQL would enforce.
                    not_null: row.get::<i64, _>(2) != 0 || primary_key,
                    primary_key,
                    default: normal_default(row.get::<Option<String>, _>(3)),
                },
            );
        }
        for row in sqlx::query("SELECT name, \"unique\", origin, partial FROM pragma_index_list(?)")
            .bind(&table)
            .fetch_all(pool)
            .await
            .expect("reading SQLite indexes")
        {
            if row.get::<String, _>(2) == "pk" {
                continue;
            }
            let name: String = row.get(0);
            let index_columns = sqlx::query("SELECT name FROM pragma_index_info(?) ORDER BY seqno")
                .bind(&name)
                .fetch_all(pool)
                .await
                .expect("reading SQLite index columns")
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect();
            schema.indexes.push(Index {
                table: table.clone(),
                columns: index_columns,
                unique: row.get::<i64, _>(1) != 0,
                partial: row.get::<i64, _>(3) != 0,
            });
        }
        schema.tables.insert(table, columns);
    }
    schema.indexes.sort();
    schema
}

async fn postgres_schema(db: &Db) -> Schema {
    let pool = db.pool();
    let name = db.schema();
    let mut schema = Schema::default();
    let primary: Vec<(String, String)> = sqlx::query(
        "SELECT k.table_name::text, k.column_name::text \
         FROM information_schema.table_constraints c \
         JOIN information_schema.key_column_usage k \
           ON k.constraint_name = c.constraint_name AND k.table_schema = c.table_schema \
         WHERE c.table_schema = $1 AND c.constraint_type = 'PRIMARY KEY'",
    )
    .bind(name)
    .fetch_all(pool)
    .await
    .expect("reading PostgreSQL primary keys")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    for row in sqlx::query(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text, \
                column_default::text \
         FROM information_schema.columns WHERE table_schema = $1 \
           AND table_name NOT IN (SELECT c.relname FROM pg_class c \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname = $1 AND c.relispartition)",
    )
    .bind(name)
    .fetch_all(pool)
    .await
    .expect("reading PostgreSQL columns")
    {
        let table: String = row.get(0);
        if INTERNAL_TABLES.contains(&table.as_str()) {
            continue;
        }
        let column: String = row.get(1);
        let primary_key = primary.contains(&(table.clone(), column.clone()));
        schema.tables.entry(table).or_default().insert(
            column,
            Column {
                family: family(&row.get::<String, _>(2)),
                not_null: row.get::<String, _>(3) == "NO",
                primary_key,
                default: normal_default(row.get::<Option<String>, _>(4)),
            },
        );
    }
    for row in sqlx::query(
        "SELECT t.relname::text, \
                CASE WHEN ix.indisunique THEN 1 ELSE 0 END, \
                CASE WHEN ix.indpred IS NOT NULL THEN 1 ELSE 0 END, \
                array_to_string(ARRAY( \
                    SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord) \
                    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
                    ORDER BY k.ord), ',') \
         FROM pg_index ix \
         JOIN pg_class t ON t.oid = ix.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = $1 AND NOT ix.indisprimary AND NOT t.relispartition",
    )
    .bind(name)
    .fetch_all(pool)
    .await
    .expect("reading PostgreSQL indexes")
    {
        let table: String = row.get(0);
        if INTERNAL_TABLES.contains(&table.as_str()) {
            continue;
        }
        schema.indexes.push(Index {
            table,
            columns: row
                .get::<String, _>(3)
                .split(',')
                .map(str::to_string)
                .collect(),
            unique: row.get::<i32, _>(1) != 0,
            partial: row.get::<i32, _>(2) != 0,
        });
    }
    schema.indexes.sort();
    schema
}

/// The differences between the two schemas, one line each (empty when they agree).
fn differences(sqlite: &Schema, postgres: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    let tables: std::collections::BTreeSet<&String> =
        sqlite.tables.keys().chain(postgres.tables.keys()).collect();
    for table in tables {
        match (sqlite.tables.get(table), postgres.tables.get(table)) {
            (Some(s), Some(p)) => {
                let columns: std::collections::BTreeSet<&String> =
                    s.keys().chain(p.keys()).collect();
                for column in columns {
                    match (s.get(column), p.get(column)) {
                        (Some(a), Some(b)) if a == b => {}
                        (a, b) => {
                            out.push(format!("{table}.{column}: SQLite {a:?}, PostgreSQL {b:?}"))
                        }
                    }
                }
            }
            (s, p) => out.push(format!(
                "table {table}: in SQLite {}, in PostgreSQL {}",
                s.is_some(),
                p.is_some()
            )),
        }
    }
    for index in &sqlite.indexes {
        if !postgres.indexes.contains(index) {
            out.push(format!("index only in SQLite: {index:?}"));
        }
    }
    for index in &postgres.indexes {
        if !sqlite.indexes.contains(index) {
            out.push(format!("index only in PostgreSQL: {index:?}"));
        }
    }
    out
}

#[tokio::test]
async fn sqlite_and_postgres_migrations_leave_the_same_schema() {
    let Some(postgres) = Backend::all()
        .into_iter()
        .find(|b| matches!(b, Backend::Distributed { .. }))
    else {
        eprintln!("skipped: no PostgreSQL (run through scripts/test)");
        return;
    };
    let (config, _dir) = postgres.config().await;
    let sqlite_dir = tempfile::tempdir().expect("a temporary directory");
    let mut drift = Vec::new();
    for service in ServiceName::ALL {
        let migrations = flowfleet::services::migrations(service);
        let on_sqlite = Db::sqlite(sqlite_dir.path(), service.as_str())
            .await
            .expect("opening SQLite");
        on_sqlite
            .migrate(migrations)
            .await
            .expect("migrating SQLite");
        let on_postgres = Db::postgres(&config.database_url_for(service), service.as_str(), 2)
            .await
            .expect("opening PostgreSQL");
        on_postgres
            .migrate(migrations)
            .await
            .expect("migrating PostgreSQL");
        let (s, p) = (
            sqlite_schema(&on_sqlite).await,
            postgres_schema(&on_postgres).await,
        );
        assert!(
            !s.tables.is_empty(),
            "{service}: its migrations made no table"
        );
        drift.extend(
            differences(&s, &p)
                .into_iter()
                .map(|d| format!("{service}: {d}")),
        );
    }
    let intended: Vec<&str> = INTENDED.iter().map(|(d, _)| *d).collect();
    for meant in &intended {
        assert!(
            drift.iter().any(|d| d == meant),
            "an intended difference is gone; remove it from INTENDED: {meant}"
        );
    }
    drift.retain(|d| !intended.contains(&d.as_str()));
    assert!(
        drift.is_empty(),
        "the SQLite and PostgreSQL migrations differ:\n{}",
        drift.join("\n")
    );
}
