//! Checks every provider's declarations go through, whatever their source. Each error names the
//! field at fault (`services.web.servers[1].weight`) so a provider can point at its own input.

pub mod tcp;

use rustc_hash::FxHashSet as HashSet;

use crate::decl::{AffinityMode, HashOn, RouteDecl, ServiceDecl};
use crate::middleware::{Middleware, MiddlewareDecl};

/// Largest server weight accepted.
pub const MAX_WEIGHT: u32 = 1000;

/// One problem in a declaration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Dotted path of the field, e.g. `routes.web.service`.
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Is `s` a valid cookie name (an RFC 6265 token)?
pub fn is_cookie_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// Is `s` a valid name for a route or service (letters, digits, `-`, `_`, `.`, `@`)?
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

/// Check one service.
pub fn service(svc: &ServiceDecl) -> Vec<ValidationError> {
    let base = format!("services.{}", svc.name);
    let mut errs = Vec::new();
    if !is_name(&svc.name) {
        errs.push(ValidationError::new(
            &base,
            "a name may hold letters, digits, '-', '_', '.' and '@'",
        ));
    }
    let mut names = HashSet::default();
    for (i, s) in svc.servers.iter().enumerate() {
        if !names.insert(s.name.as_str()) {
            errs.push(ValidationError::new(
                format!("{base}.servers[{i}].name"),
                format!("server name {:?} is used twice in this service", s.name),
            ));
        }
        if s.weight > MAX_WEIGHT {
            errs.push(ValidationError::new(
                format!("{base}.servers[{i}].weight"),
                format!("{} is above the maximum weight {MAX_WEIGHT}", s.weight),
            ));
        }
    }
    if let crate::BalanceAlgo::ConsistentHash(HashOn::Cookie(c)) = &svc.balance {
        if !is_cookie_name(c) {
            errs.push(ValidationError::new(
                format!("{base}.hash_on"),
                format!("{c:?} is not a cookie name"),
            ));
        }
    }
    if let Some(aff) = &svc.affinity {
        let name = match &aff.mode {
            AffinityMode::Cookie(a) => &a.name,
            AffinityMode::Prefix { cookie } => cookie,
        };
        if !is_cookie_name(name) {
            errs.push(ValidationError::new(
                format!("{base}.affinity.cookie"),
                format!("{name:?} is not a cookie name"),
            ));
        }
    }
    errs
}

/// Check a whole set: unique names, routes that point at existing services and middlewares, and
/// chains that do not name themselves.
pub fn set(
    services: &[ServiceDecl],
    routes: &[RouteDecl],
    middlewares: &[MiddlewareDecl],
) -> Vec<ValidationError> {
    let mut errs = Vec::new();
    let mut mw_names = HashSet::with_capacity_and_hasher(middlewares.len(), Default::default());
    for m in middlewares {
        if !mw_names.insert(m.name.as_str()) {
            errs.push(ValidationError::new(
                format!("middlewares.{}", m.name),
                "declared twice",
            ));
        }
    }
    for m in middlewares {
        if let Middleware::Chain(c) = &m.kind {
            for (i, r) in c.middlewares.iter().enumerate() {
                if !mw_names.contains(r.as_str()) {
                    errs.push(ValidationError::new(
                        format!("middlewares.{}.chain.middlewares[{i}]", m.name),
                        format!("no middleware named {r:?} (chain {})", m.name),
                    ));
                } else if reaches(middlewares, r, &m.name, 0) {
                    errs.push(ValidationError::new(
                        format!("middlewares.{}.chain.middlewares[{i}]", m.name),
                        format!(
                            "{r:?} leads back to chain {}: a chain cannot contain itself",
                            m.name
                        ),
                    ));
                }
            }
        }
    }
    // Fx-hashed: a table of 10,000 routes checks 11,000 names on every reload.
    let mut svc_names = HashSet::with_capacity_and_hasher(services.len(), Default::default());
    for s in services {
        if !svc_names.insert(s.name.as_str()) {
            errs.push(ValidationError::new(
                format!("services.{}", s.name),
                "declared twice",
            ));
        }
        errs.extend(service(s));
    }
    let mut route_names = HashSet::with_capacity_and_hasher(routes.len(), Default::default());
    for r in routes {
        // Named only when there is something to say: a valid route costs no allocation.
        let base = || format!("routes.{}", r.name);
        if !route_names.insert(r.name.as_str()) {
            errs.push(ValidationError::new(base(), "declared twice"));
        }
        if !is_name(&r.name) {
            errs.push(ValidationError::new(
                base(),
                "a name may hold letters, digits, '-', '_', '.' and '@'",
            ));
        }
        if !svc_names.contains(r.service.as_str()) {
            errs.push(ValidationError::new(
                format!("{}.service", base()),
                format!("no service named {:?}", r.service),
            ));
        }
        for (i, m) in r.middlewares.iter().enumerate() {
            if !mw_names.contains(m.as_str()) {
                errs.push(ValidationError::new(
                    format!("{}.middlewares[{i}]", base()),
                    format!("no middleware named {m:?} (route {})", r.name),
                ));
            }
        }
    }
    errs
}

/// Does middleware `from`, a chain, lead to `to` (through chains, at most 32 deep)?
fn reaches(all: &[MiddlewareDecl], from: &str, to: &str, depth: usize) -> bool {
    if from == to || depth > 32 {
        return true;
    }
    match all.iter().find(|m| m.name == from).map(|m| &m.kind) {
        Some(Middleware::Chain(c)) => c.middlewares.iter().any(|n| reaches(all, n, to, depth + 1)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_names_are_tokens() {
        assert!(is_cookie_name("connect.sid"));
        assert!(is_cookie_name("tether_web"));
        assert!(!is_cookie_name("a b"));
        assert!(!is_cookie_name("a=b"));
        assert!(!is_cookie_name(""));
    }
}
