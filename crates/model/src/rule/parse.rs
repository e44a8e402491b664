//! Recursive-descent parser for rules. Precedence: `!` binds tightest, then `&&`, then `||`.

use super::{HostPattern, Rule, SniMatch, SniRegex};

/// Which matchers a rule may use: an HTTP route's, or a TCP router's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Http,
    Tcp,
}

/// A rule that could not be parsed: the column (1-based, in characters) and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct RuleError {
    pub column: usize,
    pub message: String,
}

/// Longest rule accepted; longer input is rejected before parsing.
const MAX_RULE_LEN: usize = 8192;
/// Deepest nesting of parentheses and `!` accepted.
const MAX_DEPTH: usize = 64;

/// A token, borrowing its text from the rule.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok<'a> {
    Ident(&'a str),
    Str(&'a str),
    LParen,
    RParen,
    Comma,
    And,
    Or,
    Not,
}

struct Parser<'a> {
    /// Tokens with their 1-based column (in characters).
    toks: Vec<(Tok<'a>, usize)>,
    pos: usize,
    end: usize,
    depth: usize,
    mode: Mode,
}

pub(super) fn parse(src: &str, mode: Mode) -> Result<Rule, RuleError> {
    if src.len() > MAX_RULE_LEN {
        return Err(err(1, format!("rule is longer than {MAX_RULE_LEN} bytes")));
    }
    let toks = lex(src)?;
    if toks.is_empty() {
        let example = match mode {
            Mode::Http => "PathPrefix(`/`)",
            Mode::Tcp => "HostSNI(`*`)",
        };
        return Err(err(
            1,
            format!("empty rule: expected a matcher such as {example}"),
        ));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end: src.chars().count() + 1,
        depth: 0,
        mode,
    };
    let rule = p.or()?;
    if let Some((t, col)) = p.toks.get(p.pos) {
        return Err(err(
            *col,
            format!("unexpected {} after a complete rule", describe(t)),
        ));
    }
    Ok(rule)
}

fn err(column: usize, message: impl Into<String>) -> RuleError {
    RuleError {
        column,
        message: message.into(),
    }
}

fn describe(t: &Tok<'_>) -> String {
    match t {
        Tok::Ident(s) => format!("name {s:?}"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::Comma => "','".into(),
        Tok::And => "'&&'".into(),
        Tok::Or => "'||'".into(),
        Tok::Not => "'!'".into(),
    }
}

fn lex(src: &str) -> Result<Vec<(Tok<'_>, usize)>, RuleError> {
    // Byte offsets with 1-based character columns: errors count characters, slices use bytes.
    let mut chars = src.char_indices().zip(1..).peekable();
    let mut out = Vec::with_capacity(16);
    while let Some(((at, c), col)) = chars.next() {
        let tok = match c {
            c if c.is_whitespace() => continue,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            '!' => Tok::Not,
            '&' | '|' => {
                if chars.next_if(|&((_, d), _)| d == c).is_none() {
                    return Err(err(col, format!("expected '{c}{c}'")));
                }
                if c == '&' {
                    Tok::And
                } else {
                    Tok::Or
                }
            }
            '`' | '"' => {
                let from = at + 1;
                let Some(((to, _), _)) = chars.find(|&((_, d), _)| d == c) else {
                    return Err(err(col, format!("unterminated string starting with {c}")));
                };
                Tok::Str(&src[from..to])
            }
            c if c.is_ascii_alphabetic() => {
                let mut to = at + 1;
                while let Some(((i, _), _)) =
                    chars.next_if(|&((_, d), _)| d.is_ascii_alphanumeric())
                {
                    to = i + 1;
                }
                Tok::Ident(&src[at..to])
            }
            other => return Err(err(col, format!("unexpected character {other:?}"))),
        };
        out.push((tok, col));
    }
    Ok(out)
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Tok<'a>> {
        self.toks.get(self.pos).map(|&(t, _)| t)
    }

    fn col(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |&(_, c)| c)
    }

    fn or(&mut self) -> Result<Rule, RuleError> {
        let mut left = self.and()?;
        while self.peek() == Some(Tok::Or) {
            self.pos += 1;
            left = Rule::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Rule, RuleError> {
        let mut left = self.unary()?;
        while self.peek() == Some(Tok::And) {
            self.pos += 1;
            left = Rule::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Rule, RuleError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(
                self.col(),
                format!("rule nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        let col = self.col();
        let rule = match self.toks.get(self.pos).copied() {
            Some((Tok::Not, _)) => {
                self.pos += 1;
                Rule::Not(Box::new(self.unary()?))
            }
            Some((Tok::LParen, _)) => {
                self.pos += 1;
                let inner = self.or()?;
                self.expect(Tok::RParen, || "')'".into())?;
                inner
            }
            Some((Tok::Ident(name), _)) => {
                self.pos += 1;
                let args = self.args(name)?;
                matcher(name, args, col, self.mode)?
            }
            Some((t, c)) => {
                return Err(err(
                    c,
                    format!("expected a matcher, '(' or '!', found {}", describe(&t)),
                ))
            }
            None => return Err(err(col, "rule ends early: expected a matcher, '(' or '!'")),
        };
        self.depth -= 1;
        Ok(rule)
    }

    /// Take the token `want`; `what` names it in the error (built only on error).
    fn expect(&mut self, want: Tok<'_>, what: impl FnOnce() -> String) -> Result<(), RuleError> {
        match self.toks.get(self.pos) {
            Some((t, _)) if *t == want => {
                self.pos += 1;
                Ok(())
            }
            Some((t, c)) => Err(err(
                *c,
                format!("expected {}, found {}", what(), describe(t)),
            )),
            None => Err(err(
                self.end,
                format!("rule ends early: expected {}", what()),
            )),
        }
    }

    fn args(&mut self, name: &str) -> Result<Vec<String>, RuleError> {
        self.expect(Tok::LParen, || format!("'(' after {name}"))?;
        let mut args = Vec::with_capacity(1);
        loop {
            match self.toks.get(self.pos) {
                Some(&(Tok::Str(s), _)) => {
                    self.pos += 1;
                    args.push(s.to_string());
                }
                Some((t, c)) => {
                    return Err(err(
                        *c,
                        format!(
                            "expected a quoted argument to {name}, found {}",
                            describe(t)
                        ),
                    ))
                }
                None => return Err(err(self.end, format!("rule ends early inside {name}(...)"))),
            }
            match self.peek() {
                Some(Tok::Comma) => self.pos += 1,
                _ => break,
            }
        }
        self.expect(Tok::RParen, || format!("')' to close {name}(...)"))?;
        Ok(args)
    }
}

fn matcher(name: &str, args: Vec<String>, col: usize, mode: Mode) -> Result<Rule, RuleError> {
    const HTTP: [&str; 5] = ["Host", "Path", "PathPrefix", "Method", "Header"];
    match (mode, name) {
        (Mode::Tcp, n) if HTTP.contains(&n) => {
            return Err(err(
                col,
                format!(
                "{n} is an HTTP matcher: a TCP router matches HostSNI, HostSNIRegexp and ClientIP"
            ),
            ))
        }
        (Mode::Http, "HostSNI" | "HostSNIRegexp") => {
            return Err(err(
                col,
                format!(
                    "{name} is a TCP router's matcher: an HTTP route matches the name with Host"
                ),
            ))
        }
        _ => {}
    }
    let nonempty = |args: &[String]| {
        if args.iter().any(|a| a.is_empty()) {
            Err(err(col, format!("{name}(...) has an empty argument")))
        } else {
            Ok(())
        }
    };
    match name {
        "Host" => {
            let pats = args
                .iter()
                .map(|a| HostPattern::parse(a).map_err(|m| err(col, m)));
            Ok(Rule::Host(pats.collect::<Result<_, _>>()?))
        }
        "Path" | "PathPrefix" => {
            nonempty(&args)?;
            if let Some(bad) = args.iter().find(|a| !a.starts_with('/')) {
                return Err(err(
                    col,
                    format!("{name}({bad:?}): a path must start with '/'"),
                ));
            }
            Ok(if name == "Path" {
                Rule::Path(args)
            } else {
                Rule::PathPrefix(args)
            })
        }
        "Method" => {
            nonempty(&args)?;
            let methods: Vec<String> = args.iter().map(|m| m.to_ascii_uppercase()).collect();
            if let Some(bad) = methods
                .iter()
                .find(|m| http::Method::from_bytes(m.as_bytes()).is_err())
            {
                return Err(err(col, format!("Method({bad:?}) is not an HTTP method")));
            }
            Ok(Rule::Method(methods))
        }
        "Header" => {
            let [n, v] = <[String; 2]>::try_from(args)
                .map_err(|_| err(col, "Header takes two arguments: Header(`name`, `value`)"))?;
            if http::HeaderName::from_bytes(n.as_bytes()).is_err() {
                return Err(err(
                    col,
                    format!("Header({n:?}, ...): not a valid header name"),
                ));
            }
            Ok(Rule::Header(n.to_ascii_lowercase(), v))
        }
        "ClientIP" => {
            nonempty(&args)?;
            let ranges = args
                .iter()
                .map(|a| crate::file_config::Cidr::parse(a))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(col, format!("ClientIP: {e}")))?;
            Ok(Rule::ClientIp(ranges))
        }
        "HostSNI" => {
            if args.iter().any(|a| a.trim() == "*") {
                return Ok(Rule::HostSni(SniMatch::Any));
            }
            let pats = args
                .iter()
                .map(|a| HostPattern::parse(a).map_err(|m| err(col, format!("HostSNI: {m}"))));
            Ok(Rule::HostSni(SniMatch::Names(pats.collect::<Result<_, _>>()?)))
        }
        "HostSNIRegexp" => {
            nonempty(&args)?;
            let res = args
                .iter()
                .map(|a| SniRegex::new(a).map_err(|m| err(col, format!("HostSNIRegexp: {m}"))));
            Ok(Rule::HostSniRegexp(res.collect::<Result<_, _>>()?))
        }
        other => Err(err(
            col,
            match mode {
                Mode::Http => format!("unknown matcher {other:?}: expected Host, Path, PathPrefix, Method, Header or ClientIP"),
                Mode::Tcp => format!("unknown matcher {other:?}: a TCP router matches HostSNI, HostSNIRegexp and ClientIP"),
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Rule, RuleError> {
        super::parse(src, Mode::Http)
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        let r = parse("Path(`/a`) || Path(`/b`) && !Method(`GET`)").unwrap();
        assert!(matches!(r, Rule::Or(_, _)));
        let r = parse("(Path(`/a`) || Path(`/b`)) && Method(\"get\")").unwrap();
        assert!(matches!(r, Rule::And(_, _)));
    }

    #[test]
    fn errors_name_the_column() {
        let e = parse("Host(`a.com`) && Pth(`/`)").unwrap_err();
        assert_eq!(e.column, 18);
        assert!(e.message.contains("unknown matcher"), "{e}");
        let e = parse("PathPrefix(`/a`").unwrap_err();
        assert!(e.message.contains("')'"), "{e}");
        assert!(parse("Path(`x`)")
            .unwrap_err()
            .message
            .contains("must start with '/'"));
        assert!(parse("Host(`a`) & Path(`/`)").is_err());
        assert!(parse("").is_err());
        assert!(parse("Host(`a`) Host(`b`)").is_err());
    }

    #[test]
    fn columns_count_characters_and_point_past_the_end() {
        // 'ä' is two bytes but one column.
        let e = parse("Path(`/ä`) && Pth(`/`)").unwrap_err();
        assert_eq!(e.column, 15, "{e}");
        let e = parse("Path(`/ä`) &| Path(`/`)").unwrap_err();
        assert_eq!((e.column, e.message.as_str()), (12, "expected '&&'"));
        let e = parse("PathPrefix(`/ä` ").unwrap_err();
        assert_eq!(e.column, 17, "{e}");
        assert!(e.message.contains("')' to close PathPrefix(...)"), "{e}");
        let e = parse("Path(`/a`) && Host(`b.com").unwrap_err();
        assert_eq!(e.column, 20, "{e}");
        assert!(e.message.contains("unterminated"), "{e}");
        let e = parse("Path(`/a`, `/b`,)").unwrap_err();
        assert_eq!(e.column, 17, "{e}");
        assert!(
            e.message
                .contains("expected a quoted argument to Path, found ')'"),
            "{e}"
        );
        let r = parse("Path(`/a`,\"/b\") && Header(`X-A1`, `v`)").unwrap();
        assert_eq!(r.to_string(), "(Path(`/a`, `/b`) && Header(`x-a1`, `v`))");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}Path(`/`){}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).unwrap_err().message.contains("deeper"));
    }
}
