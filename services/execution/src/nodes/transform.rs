//! The `transform` node: a jq program (run by jaq) over the input. One result is
//! the output; several become an array; none is `null`.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, RcIter};
use jaq_json::Val;
use serde_json::Value;

use super::NodeError;

/// Compiles and runs `program`. Both a program that does not compile and one that
/// fails on this input are permanent errors: running it again changes nothing.
pub fn transform(program: &str, input: Value) -> Result<Value, NodeError> {
    let loader = Loader::new(jaq_std::defs().chain(jaq_json::defs()));
    let arena = Arena::default();
    let modules = loader
        .load(
            &arena,
            File {
                code: program,
                path: (),
            },
        )
        .map_err(|errs| {
            NodeError::permanent(format!(
                "the expression does not parse ({} error{})",
                errs.len(),
                if errs.len() == 1 { "" } else { "s" }
            ))
        })?;
    let filter = Compiler::default()
        .with_funs(jaq_std::funs().chain(jaq_json::funs()))
        .compile(modules)
        .map_err(|errs| {
            let names: Vec<String> = errs
                .into_iter()
                .flat_map(|(_, undefined)| {
                    undefined.into_iter().map(|(name, _)| format!("`{name}`"))
                })
                .collect();
            NodeError::permanent(format!(
                "the expression does not compile: undefined {}",
                names.join(", ")
            ))
        })?;
    let inputs = RcIter::new(core::iter::empty());
    let mut results = Vec::new();
    for item in filter.run((Ctx::new([], &inputs), Val::from(input))) {
        match item {
            Ok(v) => results.push(Value::from(v)),
            Err(e) => return Err(NodeError::permanent(format!("the expression failed: {e}"))),
        }
        if results.len() > 100_000 {
            return Err(NodeError::permanent(
                "the expression produced more than 100000 results",
            ));
        }
    }
    Ok(match results.len() {
        0 => Value::Null,
        1 => results.pop().unwrap_or(Value::Null),
        _ => Value::Array(results),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn runs_jq_with_the_standard_library() {
        let input = json!({"items": [{"price": 3, "qty": 2}, {"price": 5, "qty": 1}]});
        assert_eq!(
            transform("[.items[] | .price * .qty] | add", input.clone()).unwrap(),
            json!(11)
        );
        assert_eq!(
            transform(".items | map(select(.price > 4)) | length", input.clone()).unwrap(),
            json!(1)
        );
        assert_eq!(
            transform(".items[].qty", input.clone()).unwrap(),
            json!([2, 1])
        );
        assert_eq!(transform("empty", input.clone()).unwrap(), Value::Null);
        assert_eq!(
            transform("{total: (.items | length), first: .items[0].price}", input).unwrap(),
            json!({"total": 2, "first": 3})
        );
    }

    #[test]
    fn bad_programs_fail_permanently_with_a_reason() {
        let e = transform(".a | (", json!({})).unwrap_err();
        assert!(
            !e.retryable && e.message.contains("does not parse"),
            "{e:?}"
        );
        let e = transform("nosuchfilter(1)", json!({})).unwrap_err();
        assert!(e.message.contains("nosuchfilter"), "{e:?}");
        let e = transform(".a + 1", json!({"a": "text"})).unwrap_err();
        assert!(e.message.contains("failed"), "{e:?}");
    }
}
