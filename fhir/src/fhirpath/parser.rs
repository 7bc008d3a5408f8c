//! FHIRPath text → [`Expr`]: a lexer and a precedence-climbing parser for the subset of the
//! grammar that the evaluator implements. Anything outside it is rejected here with
//! [`ParseErrorKind::Unsupported`], so an expression either parses into something the
//! evaluator fully understands or fails loudly at start-up.

use std::fmt;

/// A parsed FHIRPath expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal value.
    Literal(Literal),
    /// An identifier at the start of a path: a type name (`Patient`, `Resource`) that selects
    /// the focus when it is of that type, else an element of the focus.
    Ident(String),
    /// An environment variable (`%resource`, `%context`, `%rootResource`).
    Var(String),
    /// `$this`: the focus.
    This,
    /// `target.name`: the `name` children of every item of `target`.
    Member(Box<Expr>, String),
    /// A function call on `target` (on the focus when `None`: `resolve()` inside `where`).
    Call(Option<Box<Expr>>, Function, Vec<Expr>),
    /// `target[index]`.
    Index(Box<Expr>, Box<Expr>),
    /// A binary operator.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `expr is T` / `expr as T`, with the type name stripped of its `FHIR.`/`System.` prefix.
    Type(TypeOp, Box<Expr>, String),
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `{}`.
    Empty,
    /// `true` / `false`.
    Bool(bool),
    /// `'text'`, unescaped.
    String(String),
    /// A number as written (`0`, `1.5`).
    Number(String),
}

/// The supported functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `where(criteria)`.
    Where,
    /// `exists()` / `exists(criteria)`.
    Exists,
    /// `empty()`.
    Empty,
    /// `not()`.
    Not,
    /// `first()`.
    First,
    /// `last()`.
    Last,
    /// `count()`.
    Count,
    /// `ofType(T)`.
    OfType,
    /// `as(T)`.
    As,
    /// `is(T)`.
    Is,
    /// `resolve()`: yields only the referenced resource's *type* (see the module docs).
    Resolve,
    /// `extension(url)`.
    Extension,
    /// `hasValue()`.
    HasValue,
}

impl Function {
    fn from_name(name: &str) -> Option<(Function, usize, usize)> {
        use Function::*;
        // (function, min args, max args)
        Some(match name {
            "where" => (Where, 1, 1),
            "exists" => (Exists, 0, 1),
            "empty" => (Empty, 0, 0),
            "not" => (Not, 0, 0),
            "first" => (First, 0, 0),
            "last" => (Last, 0, 0),
            "count" => (Count, 0, 0),
            "ofType" => (OfType, 1, 1),
            "as" => (As, 1, 1),
            "is" => (Is, 1, 1),
            "resolve" => (Resolve, 0, 0),
            "extension" => (Extension, 1, 1),
            "hasValue" => (HasValue, 0, 0),
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        use Function::*;
        match self {
            Where => "where",
            Exists => "exists",
            Empty => "empty",
            Not => "not",
            First => "first",
            Last => "last",
            Count => "count",
            OfType => "ofType",
            As => "as",
            Is => "is",
            Resolve => "resolve",
            Extension => "extension",
            HasValue => "hasValue",
        }
    }

    /// Whether the argument is a type specifier rather than an expression.
    fn takes_type(self) -> bool {
        matches!(self, Function::OfType | Function::As | Function::Is)
    }
}

/// The supported binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `|`
    Union,
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `and`
    And,
    /// `or`
    Or,
    /// `xor`
    Xor,
    /// `implies`
    Implies,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        use BinOp::*;
        match self {
            Union => "|",
            Eq => "=",
            Ne => "!=",
            Lt => "<",
            Le => "<=",
            Gt => ">",
            Ge => ">=",
            And => "and",
            Or => "or",
            Xor => "xor",
            Implies => "implies",
        }
    }

    /// Binding strength from the FHIRPath operator table (higher binds tighter).
    fn precedence(self) -> u8 {
        use BinOp::*;
        match self {
            Implies => 1,
            Or | Xor => 2,
            And => 3,
            Eq | Ne => 5,
            Lt | Le | Gt | Ge => 6,
            Union => 7,
        }
    }
}

/// `is` or `as` as an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeOp {
    /// `x is T`
    Is,
    /// `x as T`
    As,
}

const TYPE_OP_PRECEDENCE: u8 = 8;

/// Why an expression could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("FHIRPath {kind} at offset {offset}")]
pub struct ParseError {
    /// Byte offset in the expression.
    pub offset: usize,
    /// What went wrong.
    pub kind: ParseErrorKind,
}

/// The kinds of [`ParseError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Not FHIRPath.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// Valid FHIRPath that this evaluator does not implement (a function or operator).
    #[error("unsupported construct `{0}`")]
    Unsupported(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    /// A backtick-delimited identifier: never a keyword.
    Quoted(String),
    Str(String),
    Num(String),
    Var(String),
    This,
    Sym(&'static str),
}

fn lex(src: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |offset, msg: &str| ParseError {
        offset,
        kind: ParseErrorKind::Syntax(msg.to_owned()),
    };
    while i < b.len() {
        let start = i;
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let ident_end = |mut j: usize| {
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            j
        };
        let tok = if c.is_ascii_alphabetic() || c == b'_' {
            i = ident_end(i);
            Token::Ident(src[start..i].to_owned())
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            Token::Num(src[start..i].to_owned())
        } else if c == b'\'' || c == b'`' {
            let (text, end) = quoted(src, i).ok_or_else(|| err(start, "unterminated string"))?;
            i = end;
            if c == b'\'' {
                Token::Str(text)
            } else {
                Token::Quoted(text)
            }
        } else if c == b'%' {
            i += 1;
            if i < b.len() && (b[i] == b'`' || b[i] == b'\'') {
                let (text, end) = quoted(src, i).ok_or_else(|| err(start, "unterminated name"))?;
                i = end;
                Token::Var(text)
            } else {
                i = ident_end(i);
                Token::Var(src[start + 1..i].to_owned())
            }
        } else if c == b'$' {
            i = ident_end(i + 1);
            match &src[start..i] {
                "$this" => Token::This,
                other => {
                    return Err(ParseError {
                        offset: start,
                        kind: ParseErrorKind::Unsupported(other.to_owned()),
                    })
                }
            }
        } else {
            let two = src.get(i..i + 2).unwrap_or("");
            let sym = match two {
                "!=" | "<=" | ">=" | "!~" => two,
                _ => &src[i..i + 1],
            };
            const SYMS: &[&str] = &[
                "!=", "<=", ">=", "!~", ".", "(", ")", "[", "]", "{", "}", ",", "|", "=", "<", ">",
                "~", "+", "-", "*", "/", "&",
            ];
            let Some(sym) = SYMS.iter().find(|s| **s == sym) else {
                return Err(err(start, "unexpected character"));
            };
            i += sym.len();
            Token::Sym(sym)
        };
        out.push((start, tok));
    }
    Ok(out)
}

/// The unescaped text of a quoted string starting at `start`, and the offset after it.
fn quoted(src: &str, start: usize) -> Option<(String, usize)> {
    let quote = src.as_bytes()[start] as char;
    let mut text = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((j, c)) = chars.next() {
        match c {
            '\\' => {
                let (_, e) = chars.next()?;
                text.push(match e {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'f' => '\u{c}',
                    other => other,
                });
            }
            c if c == quote => return Some((text, start + 1 + j + 1)),
            c => text.push(c),
        }
    }
    None
}

/// Parse a FHIRPath expression.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let tokens = lex(src)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        end: src.len(),
    };
    let expr = p.expr(0)?;
    match p.tokens.get(p.pos) {
        None => Ok(expr),
        Some((offset, _)) => Err(ParseError {
            offset: *offset,
            kind: ParseErrorKind::Syntax("unexpected token".into()),
        }),
    }
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(o, _)| *o)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn syntax<T>(&self, msg: &str) -> Result<T, ParseError> {
        Err(ParseError {
            offset: self.offset(),
            kind: ParseErrorKind::Syntax(msg.to_owned()),
        })
    }

    fn unsupported<T>(&self, what: &str) -> Result<T, ParseError> {
        Err(ParseError {
            offset: self.offset(),
            kind: ParseErrorKind::Unsupported(what.to_owned()),
        })
    }

    fn expect(&mut self, sym: &'static str) -> Result<(), ParseError> {
        if self.peek() == Some(&Token::Sym(sym)) {
            self.pos += 1;
            Ok(())
        } else {
            self.syntax(&format!("expected `{sym}`"))
        }
    }

    /// Precedence climbing: parse operators that bind at least as tightly as `min`.
    fn expr(&mut self, min: u8) -> Result<Expr, ParseError> {
        let mut left = self.postfix()?;
        loop {
            let op = match self.peek() {
                Some(Token::Sym(s)) => match *s {
                    "|" => BinOp::Union,
                    "=" => BinOp::Eq,
                    "!=" => BinOp::Ne,
                    "<" => BinOp::Lt,
                    "<=" => BinOp::Le,
                    ">" => BinOp::Gt,
                    ">=" => BinOp::Ge,
                    ")" | "]" | "," => break,
                    other => return self.unsupported(other),
                },
                Some(Token::Ident(w)) => match w.as_str() {
                    "and" => BinOp::And,
                    "or" => BinOp::Or,
                    "xor" => BinOp::Xor,
                    "implies" => BinOp::Implies,
                    "is" | "as" => {
                        if TYPE_OP_PRECEDENCE < min {
                            break;
                        }
                        let op = if w == "is" { TypeOp::Is } else { TypeOp::As };
                        self.pos += 1;
                        let ty = self.type_specifier()?;
                        left = Expr::Type(op, Box::new(left), ty);
                        continue;
                    }
                    "in" | "contains" | "div" | "mod" => {
                        let w = w.clone();
                        return self.unsupported(&w);
                    }
                    _ => return self.syntax("unexpected identifier"),
                },
                None => break,
                Some(_) => return self.syntax("unexpected token"),
            };
            let prec = op.precedence();
            if prec < min {
                break;
            }
            self.pos += 1;
            // Left-associative: the right operand binds tighter than this operator.
            let right = self.expr(prec + 1)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// A type name, possibly qualified (`FHIR.Quantity`, `System.String`): the last part.
    fn type_specifier(&mut self) -> Result<String, ParseError> {
        let mut name = match self.next() {
            Some(Token::Ident(n) | Token::Quoted(n)) => n,
            _ => return self.syntax("expected a type name"),
        };
        while self.peek() == Some(&Token::Sym(".")) {
            self.pos += 1;
            name = match self.next() {
                Some(Token::Ident(n) | Token::Quoted(n)) => n,
                _ => return self.syntax("expected a type name"),
            };
        }
        Ok(name)
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.term()?;
        loop {
            match self.peek() {
                Some(Token::Sym(".")) => {
                    self.pos += 1;
                    let name = match self.next() {
                        Some(Token::Ident(n) | Token::Quoted(n)) => n,
                        _ => return self.syntax("expected a name after `.`"),
                    };
                    e = if self.peek() == Some(&Token::Sym("(")) {
                        self.call(Some(e), &name)?
                    } else {
                        Expr::Member(Box::new(e), name)
                    };
                }
                Some(Token::Sym("[")) => {
                    self.pos += 1;
                    let index = self.expr(0)?;
                    self.expect("]")?;
                    e = Expr::Index(Box::new(e), Box::new(index));
                }
                _ => return Ok(e),
            }
        }
    }

    fn call(&mut self, target: Option<Expr>, name: &str) -> Result<Expr, ParseError> {
        let Some((f, min, max)) = Function::from_name(name) else {
            return self.unsupported(&format!("{name}()"));
        };
        self.expect("(")?;
        let mut args = Vec::new();
        if self.peek() != Some(&Token::Sym(")")) {
            loop {
                args.push(if f.takes_type() {
                    Expr::Ident(self.type_specifier()?)
                } else {
                    self.expr(0)?
                });
                if self.peek() == Some(&Token::Sym(",")) {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        self.expect(")")?;
        if args.len() < min || args.len() > max {
            return self.syntax(&format!("wrong number of arguments to {name}()"));
        }
        Ok(Expr::Call(target.map(Box::new), f, args))
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let offset = self.offset();
        match self.next() {
            Some(Token::Ident(name)) => match name.as_str() {
                "true" => Ok(Expr::Literal(Literal::Bool(true))),
                "false" => Ok(Expr::Literal(Literal::Bool(false))),
                _ if self.peek() == Some(&Token::Sym("(")) => self.call(None, &name),
                _ => Ok(Expr::Ident(name)),
            },
            Some(Token::Quoted(name)) => Ok(Expr::Ident(name)),
            Some(Token::Str(s)) => Ok(Expr::Literal(Literal::String(s))),
            Some(Token::Num(n)) => {
                if n.ends_with('.') || n.matches('.').count() > 1 {
                    self.pos -= 1;
                    return self.syntax("malformed number");
                }
                Ok(Expr::Literal(Literal::Number(n)))
            }
            Some(Token::Var(v)) => Ok(Expr::Var(v)),
            Some(Token::This) => Ok(Expr::This),
            Some(Token::Sym("(")) => {
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Some(Token::Sym("{")) => {
                self.expect("}")?;
                Ok(Expr::Literal(Literal::Empty))
            }
            Some(Token::Sym(s)) => Err(ParseError {
                offset,
                kind: ParseErrorKind::Unsupported(s.to_owned()),
            }),
            None => self.syntax("unexpected end"),
        }
    }
}

impl Expr {
    /// The operands of a top-level union (`a | b | c` → `[a, b, c]`), or `[self]`.
    pub fn union_operands(&self) -> Vec<&Expr> {
        match self {
            Expr::Binary(BinOp::Union, l, r) => {
                let mut v = l.union_operands();
                v.extend(r.union_operands());
                v
            }
            e => vec![e],
        }
    }

    /// The identifier the path starts with (`Observation` in `(Observation.value as
    /// Quantity)`), if it starts with one.
    pub fn root_ident(&self) -> Option<&str> {
        match self {
            Expr::Ident(n) => Some(n),
            Expr::Member(t, _) | Expr::Index(t, _) | Expr::Type(_, t, _) => t.root_ident(),
            Expr::Call(Some(t), _, _) => t.root_ident(),
            Expr::Binary(_, l, _) => l.root_ident(),
            _ => None,
        }
    }

    fn precedence(&self) -> u8 {
        match self {
            Expr::Binary(op, _, _) => op.precedence(),
            Expr::Type(..) => TYPE_OP_PRECEDENCE,
            _ => u8::MAX,
        }
    }
}

/// Writes an identifier, backtick-quoting it when it is not a plain identifier or is a word
/// the grammar reserves in that position.
fn write_ident(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    let plain = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain {
        f.write_str(name)
    } else {
        write!(f, "`{name}`")
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Postfix targets need parentheses when they are operator expressions.
        let target = |f: &mut fmt::Formatter<'_>, t: &Expr| {
            if t.precedence() < u8::MAX {
                write!(f, "({t})")
            } else {
                write!(f, "{t}")
            }
        };
        match self {
            Expr::Literal(Literal::Empty) => f.write_str("{}"),
            Expr::Literal(Literal::Bool(b)) => write!(f, "{b}"),
            Expr::Literal(Literal::Number(n)) => f.write_str(n),
            Expr::Literal(Literal::String(s)) => {
                f.write_str("'")?;
                for c in s.chars() {
                    match c {
                        '\'' => f.write_str("\\'")?,
                        '\\' => f.write_str("\\\\")?,
                        '\n' => f.write_str("\\n")?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("'")
            }
            Expr::Ident(n) => write_ident(f, n),
            Expr::Var(v) => write!(f, "%{v}"),
            Expr::This => f.write_str("$this"),
            Expr::Member(t, n) => {
                target(f, t)?;
                f.write_str(".")?;
                write_ident(f, n)
            }
            Expr::Call(t, func, args) => {
                if let Some(t) = t {
                    target(f, t)?;
                    f.write_str(".")?;
                }
                write!(f, "{}(", func.name())?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            Expr::Index(t, i) => {
                target(f, t)?;
                write!(f, "[{i}]")
            }
            Expr::Binary(op, l, r) => {
                let p = op.precedence();
                if l.precedence() < p {
                    write!(f, "({l})")?;
                } else {
                    write!(f, "{l}")?;
                }
                write!(f, " {} ", op.symbol())?;
                if r.precedence() <= p {
                    write!(f, "({r})")
                } else {
                    write!(f, "{r}")
                }
            }
            Expr::Type(op, e, ty) => {
                if e.precedence() < TYPE_OP_PRECEDENCE {
                    write!(f, "({e})")?;
                } else {
                    write!(f, "{e}")?;
                }
                let op = if *op == TypeOp::Is { "is" } else { "as" };
                write!(f, " {op} ")?;
                write_ident(f, ty)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_search_parameter_shapes() {
        for (src, shown) in [
            ("Patient.name.family", "Patient.name.family"),
            (
                "Observation.subject.where(resolve() is Patient)",
                "Observation.subject.where(resolve() is Patient)",
            ),
            (
                "(Observation.value as Quantity) | (Observation.value.ofType(SampledData))",
                "Observation.value as Quantity | Observation.value.ofType(SampledData)",
            ),
            (
                "Patient.deceased.exists() and Patient.deceased != false",
                "Patient.deceased.exists() and Patient.deceased != false",
            ),
            ("Bundle.entry[0].resource", "Bundle.entry[0].resource"),
            (
                "ValueSet.expansion.contains.code",
                "ValueSet.expansion.contains.code",
            ),
            (
                "%resource.referenceSeq.chromosome",
                "%resource.referenceSeq.chromosome",
            ),
            (
                "Library.relatedArtifact.where(type='composed-of').resource",
                "Library.relatedArtifact.where(type = 'composed-of').resource",
            ),
            ("Task.`for`", "Task.for"),
            ("(a | b).c", "(a | b).c"),
            ("a or b and c", "a or b and c"),
            ("(a or b) and c", "(a or b) and c"),
            ("x.extension('http://a\\'b')", "x.extension('http://a\\'b')"),
        ] {
            let e = parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(e.to_string(), shown, "{src}");
            assert_eq!(parse(shown).unwrap(), e, "round trip of {src}");
        }
    }

    #[test]
    fn splits_unions_and_finds_roots() {
        let e = parse("A.x | (B.y.ofType(Z)) | C.z.where(resolve() is D)").unwrap();
        let roots: Vec<_> = e
            .union_operands()
            .iter()
            .map(|o| o.root_ident().unwrap())
            .collect();
        assert_eq!(roots, ["A", "B", "C"]);
    }

    #[test]
    fn rejects_what_it_cannot_evaluate() {
        for (src, kind) in [
            (
                "a.substring(1)",
                ParseErrorKind::Unsupported("substring()".into()),
            ),
            ("a + b", ParseErrorKind::Unsupported("+".into())),
            ("a in b", ParseErrorKind::Unsupported("in".into())),
            ("$index", ParseErrorKind::Unsupported("$index".into())),
        ] {
            assert_eq!(parse(src).unwrap_err().kind, kind, "{src}");
        }
        for bad in ["a.", "a.where(", "'open", "a b", "a.where()", "1.2.3", "#"] {
            assert!(
                matches!(parse(bad).unwrap_err().kind, ParseErrorKind::Syntax(_)),
                "{bad}"
            );
        }
    }
}
