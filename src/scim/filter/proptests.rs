//! Property tests of the filter and PATCH-path parser: arbitrary input
//! never panics and errors point inside it; any filter or path reads back
//! equal after printing; `and` binds tighter than `or`, both group to the
//! left, `not (…)` binds to its parentheses, keywords in any case.

use proptest::prelude::*;

use super::*;

const URNS: &[&str] = &[
    "urn:ietf:params:scim:schemas:core:2.0:User",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
];

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z$][a-zA-Z0-9_-]{0,8}"
}

fn attr_path(with_sub: bool) -> impl Strategy<Value = AttrPath> {
    let sub = if with_sub {
        proptest::option::of(name()).boxed()
    } else {
        Just(None).boxed()
    };
    (
        proptest::option::weighted(0.2, proptest::sample::select(URNS)),
        name(),
        sub,
    )
        .prop_map(|(uri, name, sub)| AttrPath {
            uri: uri.map(str::to_string),
            name,
            sub,
        })
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        "(?s).{0,12}".prop_map(Literal::Str),
        any::<bool>().prop_map(Literal::Bool),
        Just(Literal::Null),
        (-1e12f64..1e12).prop_map(Literal::Num),
        (-1000i32..1000).prop_map(|n| Literal::Num(f64::from(n))),
    ]
}

fn op() -> impl Strategy<Value = CompareOp> {
    proptest::sample::select(vec![
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Lt,
        CompareOp::Le,
    ])
}

fn atom() -> impl Strategy<Value = Expr> {
    prop_oneof![
        4 => (attr_path(true), op(), literal())
            .prop_map(|(path, op, value)| Expr::Compare { path, op, value }),
        1 => attr_path(true).prop_map(Expr::Present),
    ]
}

/// Filters without value paths (what may stand inside `[…]`).
fn plain_filter() -> impl Strategy<Value = Expr> {
    atom().prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Expr::Not(Box::new(a))),
        ]
    })
}

fn filter() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        3 => atom(),
        1 => (attr_path(false), plain_filter()).prop_map(|(path, f)| Expr::ValuePath {
            path,
            filter: Box::new(f),
        }),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Expr::Not(Box::new(a))),
        ]
    })
}

fn patch_path() -> impl Strategy<Value = PatchPath> {
    prop_oneof![
        attr_path(true).prop_map(|attr| PatchPath { attr, filter: None }),
        (
            attr_path(false),
            plain_filter(),
            proptest::option::of(name())
        )
            .prop_map(|(mut attr, f, sub)| {
                attr.sub = sub;
                PatchPath {
                    attr,
                    filter: Some(f),
                }
            }),
    ]
}

/// A keyword in a random mix of cases.
fn cased(word: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<bool>(), word.len()).prop_map(move |up| {
        word.chars()
            .zip(up)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

fn b(e: Expr) -> Box<Expr> {
    Box::new(e)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_input_never_panics_and_errors_point_inside_it(input in "\\PC{0,64}|[a-z \"()\\[\\].:-]{0,64}") {
        if let Err(e) = parse(&input) {
            prop_assert!(e.at <= input.len(), "{e} for {input:?}");
        }
        if let Err(e) = parse_path(&input) {
            prop_assert!(e.at <= input.len(), "{e} for {input:?}");
        }
    }

    #[test]
    fn filters_read_back_equal_after_printing(e in filter()) {
        let text = e.to_string();
        prop_assert_eq!(parse(&text).map_err(|x| TestCaseError::fail(format!("{x} in {text}")))?, e, "{}", text);
    }

    #[test]
    fn patch_paths_read_back_equal_after_printing(p in patch_path()) {
        let text = p.to_string();
        prop_assert_eq!(parse_path(&text).map_err(|x| TestCaseError::fail(format!("{x} in {text}")))?, p, "{}", text);
    }

    #[test]
    fn and_binds_tighter_than_or_and_both_group_left(
        (a, x, c) in (atom(), atom(), atom()),
        (and, or, not) in (cased("and"), cased("or"), cased("not")),
    ) {
        let parsed = |s: String| parse(&s).map_err(|e| TestCaseError::fail(format!("{e} in {s}")));
        prop_assert_eq!(
            parsed(format!("{a} {or} {x} {and} {c}"))?,
            Expr::Or(b(a.clone()), b(Expr::And(b(x.clone()), b(c.clone()))))
        );
        prop_assert_eq!(
            parsed(format!("{a} {and} {x} {or} {c}"))?,
            Expr::Or(b(Expr::And(b(a.clone()), b(x.clone()))), b(c.clone()))
        );
        prop_assert_eq!(
            parsed(format!("{a} {or} {x} {or} {c}"))?,
            Expr::Or(b(Expr::Or(b(a.clone()), b(x.clone()))), b(c.clone()))
        );
        prop_assert_eq!(
            parsed(format!("{a} {and} ({x} {or} {c})"))?,
            Expr::And(b(a.clone()), b(Expr::Or(b(x.clone()), b(c.clone()))))
        );
        prop_assert_eq!(
            parsed(format!("{not} ({a} {or} {x}) {and} {c}"))?,
            Expr::And(b(Expr::Not(b(Expr::Or(b(a.clone()), b(x.clone()))))), b(c.clone()))
        );
    }
}
