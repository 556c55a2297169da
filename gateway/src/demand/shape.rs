//! The shape of an operation: tokens in its text, and the depth, aliases, root fields and
//! directives of the operation a request runs (fragments expanded where they are used).
//! Measured on the text and the parsed document, before validation and planning, so an
//! operation built to be expensive to validate or plan is refused before it costs that.

use std::collections::HashMap;

use graphql_tools::parser::query as q;

use crate::selection::{FragmentDefinition, SelectionSet};

/// GraphQL's lexical tokens in `text` (punctuators, names, numbers, strings), not counting
/// whitespace, commas and comments; stops counting past `stop` (the answer is then
/// `stop + 1`), so a huge text costs no more than the limit.
pub(crate) fn count_tokens(text: &str, stop: usize) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut tokens = 0;
    while i < bytes.len() {
        if tokens > stop {
            return tokens;
        }
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            // Byte order mark.
            0xEF if bytes[i..].starts_with(&[0xEF, 0xBB, 0xBF]) => i += 3,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' => {
                tokens += 1;
                if bytes[i..].starts_with(b"\"\"\"") {
                    i += 3;
                    while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                        i += if bytes[i..].starts_with(b"\\\"\"\"") {
                            4
                        } else {
                            1
                        };
                    }
                    i += 3;
                } else {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                }
            }
            b'.' if bytes[i..].starts_with(b"...") => {
                tokens += 1;
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                // A name or a number (with its sign, fraction and exponent).
                tokens += 1;
                i += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || matches!(bytes[i], b'_' | b'.' | b'+' | b'-')
                            && !bytes[i..].starts_with(b"..."))
                {
                    i += 1;
                }
            }
            _ => {
                tokens += 1;
                i += 1;
            }
        }
    }
    tokens
}

/// What [`measure`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Fields on the longest path from the root (a root field is at depth 1).
    pub depth: usize,
    /// Fields selected under another name.
    pub aliases: usize,
    /// Fields selected on the root type.
    pub root_fields: usize,
    /// Directives used in the operation (including its fragments where spread).
    pub directives: usize,
}

/// Measures the selected operation. A fragment counts wherever it is spread (so a fragment
/// spread a hundred times counts a hundred times); a fragment spread inside itself (which
/// validation refuses afterwards) is not followed twice along one path.
pub(crate) fn measure(
    selection: &SelectionSet,
    operation_directives: usize,
    fragments: &HashMap<String, FragmentDefinition>,
) -> Shape {
    let mut shape = Shape {
        directives: operation_directives,
        ..Shape::default()
    };
    let mut path = Vec::new();
    shape.root_fields = count_fields(selection, fragments, &mut path);
    walk(selection, 1, fragments, &mut path, &mut shape);
    shape
}

/// Fields directly in `selection` (through fragments), without descending into fields.
fn count_fields<'a>(
    selection: &'a SelectionSet,
    fragments: &'a HashMap<String, FragmentDefinition>,
    path: &mut Vec<&'a str>,
) -> usize {
    let mut count = 0;
    for item in &selection.items {
        match item {
            q::Selection::Field(_) => count += 1,
            q::Selection::InlineFragment(inline) => {
                count += count_fields(&inline.selection_set, fragments, path)
            }
            q::Selection::FragmentSpread(spread) => {
                let name = spread.fragment_name.as_str();
                if let Some(fragment) = fragments.get(name).filter(|_| !path.contains(&name)) {
                    path.push(name);
                    count += count_fields(&fragment.selection_set, fragments, path);
                    path.pop();
                }
            }
        }
    }
    count
}

fn walk<'a>(
    selection: &'a SelectionSet,
    depth: usize,
    fragments: &'a HashMap<String, FragmentDefinition>,
    path: &mut Vec<&'a str>,
    shape: &mut Shape,
) {
    for item in &selection.items {
        match item {
            q::Selection::Field(field) => {
                shape.depth = shape.depth.max(depth);
                shape.directives += field.directives.len();
                if field.alias.as_ref().is_some_and(|a| *a != field.name) {
                    shape.aliases += 1;
                }
                walk(&field.selection_set, depth + 1, fragments, path, shape);
            }
            q::Selection::InlineFragment(inline) => {
                shape.directives += inline.directives.len();
                walk(&inline.selection_set, depth, fragments, path, shape);
            }
            q::Selection::FragmentSpread(spread) => {
                shape.directives += spread.directives.len();
                let name = spread.fragment_name.as_str();
                if let Some(fragment) = fragments.get(name).filter(|_| !path.contains(&name)) {
                    shape.directives += fragment.directives.len();
                    path.push(name);
                    walk(&fragment.selection_set, depth, fragments, path, shape);
                    path.pop();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_of(query: &str) -> Shape {
        let document = graphql_tools::parser::parse_query::<String>(query)
            .unwrap()
            .into_static();
        let mut fragments = HashMap::new();
        let mut operation = None;
        for definition in document.definitions {
            match definition {
                q::Definition::Fragment(f) => {
                    fragments.insert(f.name.clone(), f);
                }
                q::Definition::Operation(q::OperationDefinition::Query(op)) => {
                    operation = Some((op.selection_set, op.directives.len()))
                }
                q::Definition::Operation(q::OperationDefinition::SelectionSet(s)) => {
                    operation = Some((s, 0))
                }
                _ => {}
            }
        }
        let (selection, directives) = operation.unwrap();
        measure(&selection, directives, &fragments)
    }

    #[test]
    fn tokens_skip_whitespace_commas_and_comments() {
        assert_eq!(count_tokens("{ a }", 100), 3);
        assert_eq!(
            count_tokens("query Q($v: Int = -1.5e3) { a(x: $v), b # c d e\n }", 100),
            20
        );
        assert_eq!(
            count_tokens(r#"{ a(s: "x \" y", t: """block "" """) }"#, 100),
            11
        );
        assert_eq!(count_tokens("{ ...F } fragment F on T { a }", 100), 11);
        // Stops early on huge texts.
        assert_eq!(count_tokens(&"{ a ".repeat(1_000_000), 10), 11);
    }

    #[test]
    fn depth_aliases_root_fields_and_directives() {
        let shape = shape_of(
            "query @a { x: me { b: name friends { name @include(if: true) } } other ...F } \
             fragment F on Query @f { third { deep { deeper { deepest } } } }",
        );
        assert_eq!(
            shape,
            Shape {
                depth: 4,
                aliases: 2,
                root_fields: 3,
                directives: 3,
            }
        );
    }

    #[test]
    fn a_fragment_counts_where_it_is_spread_and_cycles_end() {
        let shape = shape_of("{ ...F ...F } fragment F on Query { a: x }");
        assert_eq!(shape.aliases, 2);
        assert_eq!(shape.root_fields, 2);
        let cyclic = shape_of("{ ...F } fragment F on Query { x { ...F } }");
        assert_eq!(cyclic.depth, 1);
    }
}
