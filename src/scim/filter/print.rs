//! Writing filters and PATCH paths back as text (`Display`): the inverse
//! of the parser, with parentheses only where precedence needs them
//! (`and` binds tighter than `or`; both group to the left), strings as
//! JSON strings; the parser's round-trip property tests read through it.

use std::fmt;

use super::{AttrPath, Expr, Literal, PatchPath};

/// Binding strength: `or` < `and` < everything else.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Or,
    And,
    Unary,
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(uri) = &self.uri {
            write!(f, "{uri}:")?;
        }
        f.write_str(&self.dotted())
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Str(s) => f.write_str(&serde_json::Value::String(s.clone()).to_string()),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Null => f.write_str("null"),
            // `Display` for f64 is the shortest text that reads back equal.
            Literal::Num(n) => write!(f, "{n}"),
        }
    }
}

fn write(f: &mut fmt::Formatter<'_>, e: &Expr, min: Level) -> fmt::Result {
    let level = match e {
        Expr::Or(..) => Level::Or,
        Expr::And(..) => Level::And,
        _ => Level::Unary,
    };
    if level < min {
        f.write_str("(")?;
        write(f, e, Level::Or)?;
        return f.write_str(")");
    }
    match e {
        Expr::Or(a, b) => {
            write(f, a, Level::Or)?;
            f.write_str(" or ")?;
            write(f, b, Level::And)
        }
        Expr::And(a, b) => {
            write(f, a, Level::And)?;
            f.write_str(" and ")?;
            write(f, b, Level::Unary)
        }
        Expr::Not(inner) => {
            f.write_str("not (")?;
            write(f, inner, Level::Or)?;
            f.write_str(")")
        }
        Expr::Compare { path, op, value } => write!(f, "{path} {} {value}", op.as_str()),
        Expr::Present(path) => write!(f, "{path} pr"),
        Expr::ValuePath { path, filter } => {
            write!(f, "{path}[")?;
            write(f, filter, Level::Or)?;
            f.write_str("]")
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write(f, self, Level::Or)
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(filter) = &self.filter else {
            return write!(f, "{}", self.attr);
        };
        if let Some(uri) = &self.attr.uri {
            write!(f, "{uri}:")?;
        }
        write!(f, "{}[{filter}]", self.attr.name)?;
        match &self.attr.sub {
            Some(sub) => write!(f, ".{sub}"),
            None => Ok(()),
        }
    }
}
