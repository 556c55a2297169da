//! A bounded cache of prepared (parsed, validated, planned) operations.
//!
//! Why two levels: clients send the same operation text again and again, so the first lookup
//! is by the exact text and costs one hash. Different clients send the same operation with
//! different whitespace, comments or commas; the second level is keyed on the normalized
//! (minified) text, so those share one plan instead of each paying for planning and taking a
//! slot. Both levels are bounded (least recently/frequently used entries are evicted), so a
//! client sending endless distinct operations cannot grow the gateway's memory.

use std::sync::Arc;

use moka::sync::Cache;

use crate::operation::PreparedOperation;

/// Operation name + NUL + operation text: one allocation per lookup, no tuple of Strings.
type Key = String;

fn key(query: &str, operation_name: Option<&str>) -> Key {
    let name = operation_name.unwrap_or("");
    let mut key = String::with_capacity(name.len() + 1 + query.len());
    key.push_str(name);
    key.push('\0');
    key.push_str(query);
    key
}

pub(crate) struct OperationCache {
    by_text: Cache<Key, Arc<PreparedOperation>>,
    by_normalized: Cache<Key, Arc<PreparedOperation>>,
}

/// Where a lookup was answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    Text,
    Normalized,
    Miss,
}

impl OperationCache {
    /// `capacity` bounds each level's number of entries (0 disables caching).
    pub fn new(capacity: u64) -> Self {
        Self {
            by_text: Cache::new(capacity),
            by_normalized: Cache::new(capacity),
        }
    }

    /// Returns the cached operation, or prepares it with `prepare` and caches it. Failures are
    /// not cached (they are cheap to recompute and must not take slots).
    pub fn get_or_prepare<E>(
        &self,
        query: &str,
        operation_name: Option<&str>,
        prepare: impl FnOnce() -> Result<Arc<PreparedOperation>, E>,
    ) -> Result<(Arc<PreparedOperation>, Lookup), E> {
        let text_key = key(query, operation_name);
        if let Some(hit) = self.by_text.get(&text_key) {
            return Ok((hit, Lookup::Text));
        }
        // A query that does not even lex has no normalized form; `prepare` reports it.
        let normalized_key = graphql_tools::parser::minify_query(query)
            .ok()
            .map(|normalized| key(&normalized, operation_name));
        if let Some(normalized_key) = &normalized_key {
            if let Some(hit) = self.by_normalized.get(normalized_key) {
                self.by_text.insert(text_key, hit.clone());
                return Ok((hit, Lookup::Normalized));
            }
        }
        let prepared = prepare()?;
        if let Some(normalized_key) = normalized_key {
            self.by_normalized.insert(normalized_key, prepared.clone());
        }
        self.by_text.insert(text_key, prepared.clone());
        Ok((prepared, Lookup::Miss))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;

    fn prepared() -> Arc<PreparedOperation> {
        Arc::new(PreparedOperation::for_tests(Plan::default()))
    }

    #[test]
    fn formatting_variants_share_one_prepared_operation() {
        let cache = OperationCache::new(16);
        let mut prepares = 0;
        let mut lookup = |query: &str| {
            cache
                .get_or_prepare::<()>(query, None, || {
                    prepares += 1;
                    Ok(prepared())
                })
                .map(|(_, how)| how)
                .expect("prepared")
        };
        assert_eq!(lookup("{ me { id } }"), Lookup::Miss);
        assert_eq!(lookup("{ me { id } }"), Lookup::Text);
        assert_eq!(
            lookup("# a comment\n{\n  me {\n    id\n  }\n}"),
            Lookup::Normalized
        );
        assert_eq!(lookup("{ me { id, } }"), Lookup::Normalized);
        assert_eq!(lookup("{ me { name } }"), Lookup::Miss);
        assert_eq!(prepares, 2);
    }

    #[test]
    fn operation_name_is_part_of_the_key_and_failures_are_not_cached() {
        let cache = OperationCache::new(16);
        let doc = "query A { a } query B { b }";
        let a = cache
            .get_or_prepare::<()>(doc, Some("A"), || Ok(prepared()))
            .expect("A");
        let b = cache
            .get_or_prepare::<()>(doc, Some("B"), || Ok(prepared()))
            .expect("B");
        assert!(!Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a.1, Lookup::Miss);
        assert_eq!(b.1, Lookup::Miss);
        let failed = cache.get_or_prepare(doc, None, || Err("no operation name"));
        assert!(failed.is_err());
        let again = cache.get_or_prepare(doc, None, || Err("no operation name"));
        assert!(
            again.is_err(),
            "a failure must be recomputed, not served from the cache"
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = OperationCache::new(8);
        for i in 0..200 {
            let query = format!("{{ f{i} }}");
            cache
                .get_or_prepare::<()>(&query, None, || Ok(prepared()))
                .expect("prepared");
        }
        cache.by_text.run_pending_tasks();
        cache.by_normalized.run_pending_tasks();
        assert!(
            cache.by_text.entry_count() <= 8,
            "{}",
            cache.by_text.entry_count()
        );
        assert!(cache.by_normalized.entry_count() <= 8);
    }
}
