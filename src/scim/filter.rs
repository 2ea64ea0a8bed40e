//! SCIM filter expressions and PATCH paths (RFC 7644 §3.4.2.2, §3.5.2):
//! a small recursive-descent parser into [`Expr`] / [`PatchPath`], and
//! evaluation of an [`Expr`] against a JSON value (used for PATCH value
//! filters such as `members[value eq "…"]`). List queries turn an `Expr`
//! into a store query in `query`.
//!
//! Grammar (`and` binds tighter than `or`; keywords and operators are
//! case-insensitive; attribute names too):
//!
//! ```text
//! filter   = or
//! or       = and *("or" and)
//! and      = unary *("and" unary)
//! unary    = "not" "(" filter ")" / "(" filter ")" / attrExp / valuePath
//! attrExp  = attrPath "pr" / attrPath compareOp value
//! valuePath= attrPath "[" filter "]"          ; not nested
//! value    = JSON string / true / false / null / number
//! ```
//!
//! No crate was used: the one published SCIM filter parser (`scim-filter`
//! 0.2) gives `and` and `or` the same precedence, cannot parse escaped
//! quotes or `""`, and pulls in nom, chrono and rust_decimal.

use serde_json::Value;

/// Longest filter or path accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;
/// Deepest nesting of parentheses / `not` accepted.
pub const MAX_DEPTH: usize = 32;

/// Why a filter or path did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter at byte {at}: {message}")]
pub struct FilterError {
    pub at: usize,
    pub message: String,
}

/// An attribute reference: `[uri:]name[.sub]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// Schema URN prefix, when given (`urn:…:enterprise:2.0:User`).
    pub uri: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// The path as written (`name.sub`, without the URN).
    pub fn dotted(&self) -> String {
        match &self.sub {
            Some(s) => format!("{}.{s}", self.name),
            None => self.name.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<CompareOp> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }
}

/// A comparison value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Bool(bool),
    Null,
    Num(f64),
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: Literal,
    },
    Present(AttrPath),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `attr[filter]`: some element of the multi-valued `attr` matches.
    ValuePath {
        path: AttrPath,
        filter: Box<Expr>,
    },
}

/// A PATCH `path`: `attrPath` or `valuePath ["." subAttr]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    /// The value filter of `attr[filter]`.
    pub filter: Option<Expr>,
}

/// Parse a filter.
pub fn parse(input: &str) -> Result<Expr, FilterError> {
    let mut p = Parser::new(input)?;
    let e = p.or(0, false)?;
    p.end()?;
    Ok(e)
}

/// Parse a PATCH path (`members[value eq "x"]`, `name.givenName`,
/// `emails[type eq "work"].value`, `urn:…:User:department`).
pub fn parse_path(input: &str) -> Result<PatchPath, FilterError> {
    let mut p = Parser::new(input)?;
    let (at, word) = match p.next()? {
        Some((at, Token::Word(w))) => (at, w),
        other => {
            return Err(p.error_at(
                other.map_or(input.len(), |t| t.0),
                "expected an attribute path",
            ))
        }
    };
    let mut attr = attr_path(&word, at)?;
    let mut filter = None;
    if p.peek_is(&Token::Open('[')) {
        p.next()?;
        if attr.sub.is_some() {
            return Err(p.error_at(
                at,
                "a value filter follows an attribute, not a sub-attribute",
            ));
        }
        filter = Some(p.or(1, true)?);
        p.expect(Token::Close(']'))?;
        // `].sub` arrives as one word starting with a dot.
        if let Some((at, Token::Word(w))) = p.peek().cloned() {
            if let Some(sub) = w.strip_prefix('.') {
                if !valid_name(sub) {
                    return Err(p.error_at(at, format!("invalid sub-attribute `{sub}`")));
                }
                p.next()?;
                attr.sub = Some(sub.to_string());
            }
        }
    }
    p.end()?;
    Ok(PatchPath { attr, filter })
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open(char),
    Close(char),
    Str(String),
    Word(String),
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<(usize, Token)>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Result<Parser<'a>, FilterError> {
        if input.len() > MAX_FILTER_LEN {
            return Err(FilterError {
                at: MAX_FILTER_LEN,
                message: format!("longer than {MAX_FILTER_LEN} bytes"),
            });
        }
        Ok(Parser {
            input,
            tokens: tokenize(input)?,
            pos: 0,
        })
    }

    fn error_at(&self, at: usize, message: impl Into<String>) -> FilterError {
        FilterError {
            at,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<&(usize, Token)> {
        self.tokens.get(self.pos)
    }

    fn peek_is(&self, t: &Token) -> bool {
        self.peek().is_some_and(|(_, x)| x == t)
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some((_, Token::Word(w))) if w.eq_ignore_ascii_case(kw))
    }

    fn next(&mut self) -> Result<Option<(usize, Token)>, FilterError> {
        let t = self.tokens.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        Ok(t)
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.input.len(), |t| t.0)
    }

    fn expect(&mut self, want: Token) -> Result<(), FilterError> {
        let at = self.here();
        match self.next()? {
            Some((_, t)) if t == want => Ok(()),
            _ => Err(self.error_at(at, format!("expected `{}`", token_text(&want)))),
        }
    }

    fn end(&self) -> Result<(), FilterError> {
        match self.peek() {
            None => Ok(()),
            Some((at, t)) => Err(self.error_at(*at, format!("unexpected `{}`", token_text(t)))),
        }
    }

    fn or(&mut self, depth: usize, in_brackets: bool) -> Result<Expr, FilterError> {
        let mut left = self.and(depth, in_brackets)?;
        while self.peek_keyword("or") {
            self.next()?;
            let right = self.and(depth, in_brackets)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize, in_brackets: bool) -> Result<Expr, FilterError> {
        let mut left = self.unary(depth, in_brackets)?;
        while self.peek_keyword("and") {
            self.next()?;
            let right = self.unary(depth, in_brackets)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize, in_brackets: bool) -> Result<Expr, FilterError> {
        let at = self.here();
        if depth >= MAX_DEPTH {
            return Err(self.error_at(at, format!("nested deeper than {MAX_DEPTH}")));
        }
        if self.peek_keyword("not")
            && matches!(self.tokens.get(self.pos + 1), Some((_, Token::Open('('))))
        {
            self.next()?;
            self.next()?;
            let inner = self.or(depth + 1, in_brackets)?;
            self.expect(Token::Close(')'))?;
            return Ok(Expr::Not(Box::new(inner)));
        }
        if self.peek_is(&Token::Open('(')) {
            self.next()?;
            let inner = self.or(depth + 1, in_brackets)?;
            self.expect(Token::Close(')'))?;
            return Ok(inner);
        }
        let word = match self.next()? {
            Some((_, Token::Word(w))) => w,
            Some((at, t)) => {
                return Err(self.error_at(
                    at,
                    format!("expected an attribute, found `{}`", token_text(&t)),
                ))
            }
            None => return Err(self.error_at(at, "expected an attribute, found the end")),
        };
        let path = attr_path(&word, at)?;
        if self.peek_is(&Token::Open('[')) {
            if in_brackets {
                return Err(self.error_at(self.here(), "value filters cannot be nested"));
            }
            if path.sub.is_some() {
                return Err(self.error_at(
                    at,
                    "a value filter follows an attribute, not a sub-attribute",
                ));
            }
            self.next()?;
            let inner = self.or(depth + 1, true)?;
            self.expect(Token::Close(']'))?;
            return Ok(Expr::ValuePath {
                path,
                filter: Box::new(inner),
            });
        }
        let op_at = self.here();
        let op_word = match self.next()? {
            Some((_, Token::Word(w))) => w,
            _ => {
                return Err(self.error_at(
                    op_at,
                    "expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)",
                ))
            }
        };
        if op_word.eq_ignore_ascii_case("pr") {
            return Ok(Expr::Present(path));
        }
        let Some(op) = CompareOp::parse(&op_word) else {
            return Err(self.error_at(op_at, format!("unknown operator `{op_word}`")));
        };
        let value_at = self.here();
        let value = match self.next()? {
            Some((_, Token::Str(s))) => Literal::Str(s),
            Some((_, Token::Word(w))) => literal_word(&w).ok_or_else(|| {
                self.error_at(
                    value_at,
                    format!("expected a value, found `{w}` (quote strings)"),
                )
            })?,
            _ => return Err(self.error_at(value_at, "expected a value")),
        };
        Ok(Expr::Compare { path, op, value })
    }
}

fn token_text(t: &Token) -> String {
    match t {
        Token::Open(c) | Token::Close(c) => c.to_string(),
        Token::Str(s) => format!("\"{s}\""),
        Token::Word(w) => w.clone(),
    }
}

fn literal_word(w: &str) -> Option<Literal> {
    match w.to_ascii_lowercase().as_str() {
        "true" => Some(Literal::Bool(true)),
        "false" => Some(Literal::Bool(false)),
        "null" => Some(Literal::Null),
        _ => {
            let first = w.chars().next()?;
            if first.is_ascii_digit() || first == '-' {
                w.parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .map(Literal::Num)
            } else {
                None
            }
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '$' | '+')
}

fn tokenize(input: &str) -> Result<Vec<(usize, Token)>, FilterError> {
    let mut out = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                chars.next();
            }
            '(' | '[' => {
                chars.next();
                out.push((at, Token::Open(c)));
            }
            ')' | ']' => {
                chars.next();
                out.push((at, Token::Close(c)));
            }
            '"' => {
                // A JSON string: find its end, honouring backslash escapes,
                // then let serde_json decode the escapes.
                let mut end = None;
                let mut escaped = false;
                chars.next();
                for (i, ch) in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if ch == '\\' {
                        escaped = true;
                    } else if ch == '"' {
                        end = Some(i);
                        break;
                    }
                }
                let Some(end) = end else {
                    return Err(FilterError {
                        at,
                        message: "unterminated string".into(),
                    });
                };
                let s: String =
                    serde_json::from_str(&input[at..=end]).map_err(|e| FilterError {
                        at,
                        message: format!("invalid string: {e}"),
                    })?;
                out.push((at, Token::Str(s)));
            }
            c if is_word_char(c) => {
                let mut end = at;
                while let Some(&(i, ch)) = chars.peek() {
                    if !is_word_char(ch) {
                        break;
                    }
                    end = i + ch.len_utf8();
                    chars.next();
                }
                out.push((at, Token::Word(input[at..end].to_string())));
            }
            other => {
                return Err(FilterError {
                    at,
                    message: format!("unexpected character `{other}`"),
                })
            }
        }
    }
    Ok(out)
}

/// Attribute names: a letter (or `$` for `$ref`), then letters, digits, `_`, `-`.
fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '$' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `s` without `prefix` when it starts with it, ASCII case ignored. Safe on
/// any text: bytes are compared, never a `str` cut inside a character.
pub fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix.as_bytes()) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// Whether `s` is a URN-prefixed name (`urn:` and something after it).
pub fn is_urn(s: &str) -> bool {
    strip_prefix_ci(s, "urn:").is_some_and(|r| !r.is_empty())
}

/// Split `[urn:…:]name[.sub]`.
fn attr_path(word: &str, at: usize) -> Result<AttrPath, FilterError> {
    let bad = |m: String| FilterError { at, message: m };
    let (uri, rest) = if is_urn(word) {
        match word.rfind(':') {
            Some(i) if i + 1 < word.len() => (Some(word[..i].to_string()), &word[i + 1..]),
            _ => return Err(bad(format!("`{word}` names a schema but no attribute"))),
        }
    } else {
        (None, word)
    };
    let (name, sub) = match rest.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (rest, None),
    };
    if !valid_name(name) {
        return Err(bad(format!("invalid attribute name `{rest}`")));
    }
    if let Some(s) = sub {
        if !valid_name(s) {
            return Err(bad(format!("invalid sub-attribute `{s}` in `{rest}`")));
        }
    }
    Ok(AttrPath {
        uri,
        name: name.to_string(),
        sub: sub.map(str::to_string),
    })
}

/// Schema URNs whose attributes live at the top level of a resource.
pub const CORE_SCHEMAS: &[&str] = &[
    "urn:ietf:params:scim:schemas:core:2.0:User",
    "urn:ietf:params:scim:schemas:core:2.0:Group",
];

/// Attributes compared case-sensitively (RFC 7643 `caseExact: true`).
pub fn case_exact(name: &str) -> bool {
    ["id", "externalId", "$ref", "version"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

/// Look up `key` in a JSON object, attribute names being case-insensitive.
pub fn get_ci<'v>(obj: &'v serde_json::Map<String, Value>, key: &str) -> Option<&'v Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

impl Expr {
    /// Whether `resource` (a JSON object) matches.
    pub fn matches(&self, resource: &Value) -> bool {
        match self {
            Expr::And(a, b) => a.matches(resource) && b.matches(resource),
            Expr::Or(a, b) => a.matches(resource) || b.matches(resource),
            Expr::Not(e) => !e.matches(resource),
            Expr::Present(path) => values_at(resource, path).iter().any(|v| present(v)),
            Expr::Compare { path, op, value } => {
                let exact = case_exact(path.sub.as_deref().unwrap_or(&path.name));
                values_at(resource, path)
                    .iter()
                    .any(|v| compare(v, *op, value, exact))
            }
            Expr::ValuePath { path, filter } => match attribute(resource, path) {
                Some(Value::Array(items)) => items.iter().any(|item| filter.matches(item)),
                Some(v @ Value::Object(_)) => filter.matches(v),
                _ => false,
            },
        }
    }
}

/// The attribute `path.name` of `resource`, honouring a URN prefix.
fn attribute<'v>(resource: &'v Value, path: &AttrPath) -> Option<&'v Value> {
    let obj = resource.as_object()?;
    let holder = match &path.uri {
        Some(uri) if !CORE_SCHEMAS.iter().any(|c| c.eq_ignore_ascii_case(uri)) => {
            get_ci(obj, uri)?.as_object()?
        }
        _ => obj,
    };
    get_ci(holder, &path.name)
}

/// Every simple value `path` reaches: a multi-valued attribute yields each
/// element; a complex one without a sub-attribute yields its `value`.
fn values_at<'v>(resource: &'v Value, path: &AttrPath) -> Vec<&'v Value> {
    let Some(attr) = attribute(resource, path) else {
        return Vec::new();
    };
    let items: Vec<&Value> = match attr {
        Value::Array(items) => items.iter().collect(),
        v => vec![v],
    };
    items
        .into_iter()
        .filter_map(|item| match (item, &path.sub) {
            (Value::Object(o), Some(sub)) => get_ci(o, sub),
            (Value::Object(o), None) => get_ci(o, "value"),
            (v, None) => Some(v),
            (_, Some(_)) => None,
        })
        .collect()
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn compare(v: &Value, op: CompareOp, lit: &Literal, exact: bool) -> bool {
    match (v, lit) {
        (Value::String(s), Literal::Str(l)) => {
            let (a, b) = if exact {
                (s.clone(), l.clone())
            } else {
                (s.to_ascii_lowercase(), l.to_ascii_lowercase())
            };
            match op {
                CompareOp::Eq => a == b,
                CompareOp::Ne => a != b,
                CompareOp::Co => a.contains(&b),
                CompareOp::Sw => a.starts_with(&b),
                CompareOp::Ew => a.ends_with(&b),
                CompareOp::Gt => a > b,
                CompareOp::Ge => a >= b,
                CompareOp::Lt => a < b,
                CompareOp::Le => a <= b,
            }
        }
        (Value::Bool(a), Literal::Bool(b)) => match op {
            CompareOp::Eq => a == b,
            CompareOp::Ne => a != b,
            _ => false,
        },
        (Value::Number(n), Literal::Num(b)) => {
            let Some(a) = n.as_f64() else { return false };
            match op {
                CompareOp::Eq => a == *b,
                CompareOp::Ne => a != *b,
                CompareOp::Gt => a > *b,
                CompareOp::Ge => a >= *b,
                CompareOp::Lt => a < *b,
                CompareOp::Le => a <= *b,
                _ => false,
            }
        }
        (Value::Null, Literal::Null) => op == CompareOp::Eq,
        (_, Literal::Null) => op == CompareOp::Ne,
        _ => op == CompareOp::Ne,
    }
}

mod print;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
