//! `headers`: fields set, added or removed on the request (`request`) and on the response
//! (`response`), and Traefik's security fields, which become response fields:
//! `frame_deny` (`X-Frame-Options: DENY`), `content_type_nosniff`, `browser_xss_filter`,
//! `referrer_policy`, `content_security_policy`, and `sts_seconds` with `sts_include_subdomains`
//! and `sts_preload` (`Strict-Transport-Security`, on responses over TLS only).
//!
//! Within one list, `remove` applies first, then `set` (which replaces every field of its name),
//! then `add`. The fields Tether itself owns cannot be touched, and a rule naming one is refused:
//! hop-by-hop fields, `Content-Length`, `Transfer-Encoding`, `X-Forwarded-*`, `Forwarded` and
//! `X-Real-Ip`. A value holding CR, LF or NUL is refused when the rule is read.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Cx;
use crate::decl::Hsts;
use crate::validate::ValidationError;

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Headers {
    pub request: FieldRules,
    pub response: FieldRules,
    pub security: Security,
}

/// Edits of one message's fields. Names are lower case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldRules {
    pub remove: Vec<String>,
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
}

impl FieldRules {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}

/// Traefik's security fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Security {
    pub frame_deny: bool,
    pub content_type_nosniff: bool,
    pub browser_xss_filter: bool,
    pub referrer_policy: Option<String>,
    pub content_security_policy: Option<String>,
    pub sts: Option<Hsts>,
}

impl Security {
    /// The response fields these ask for, in a fixed order, and whether each goes only on
    /// responses over TLS.
    pub fn fields(&self) -> Vec<(&'static str, String, bool)> {
        let mut out = Vec::new();
        if self.frame_deny {
            out.push(("x-frame-options", "DENY".to_string(), false));
        }
        if self.content_type_nosniff {
            out.push(("x-content-type-options", "nosniff".to_string(), false));
        }
        if self.browser_xss_filter {
            out.push(("x-xss-protection", "1; mode=block".to_string(), false));
        }
        if let Some(p) = &self.referrer_policy {
            out.push(("referrer-policy", p.clone(), false));
        }
        if let Some(p) = &self.content_security_policy {
            out.push(("content-security-policy", p.clone(), false));
        }
        if let Some(h) = &self.sts {
            out.push(("strict-transport-security", h.value(), true));
        }
        out
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRules {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    add: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    #[serde(default)]
    request: RawRules,
    #[serde(default)]
    response: RawRules,
    #[serde(default)]
    frame_deny: bool,
    #[serde(default)]
    content_type_nosniff: bool,
    #[serde(default)]
    browser_xss_filter: bool,
    referrer_policy: Option<String>,
    content_security_policy: Option<String>,
    sts_seconds: Option<u64>,
    #[serde(default)]
    sts_include_subdomains: bool,
    #[serde(default)]
    sts_preload: bool,
}

/// Why Tether keeps field `name` to itself, if it does.
pub fn owned(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase();
    match n.as_str() {
        "connection"
        | "keep-alive"
        | "proxy-connection"
        | "te"
        | "trailer"
        | "upgrade"
        | "proxy-authenticate"
        | "proxy-authorization" => Some("a hop-by-hop field"),
        "content-length" | "transfer-encoding" => Some("the message's framing"),
        "forwarded" | "x-real-ip" => Some("a forwarding field Tether writes"),
        _ if n.starts_with("x-forwarded-") => Some("a forwarding field Tether writes"),
        _ => None,
    }
}

fn name_ok(base: &str, name: &str, request: bool) -> Result<String, ValidationError> {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(ValidationError::new(
            base,
            format!("{name:?} is not a field name"),
        ));
    }
    if let Some(why) = owned(name) {
        return Err(ValidationError::new(
            base,
            format!("{name:?} is {why}: Tether sets it and a rule cannot"),
        ));
    }
    if !request && name.eq_ignore_ascii_case("host") {
        return Err(ValidationError::new(base, "\"host\" is a request field"));
    }
    Ok(name.to_ascii_lowercase())
}

/// A field value: no CR, LF or NUL (nor anything else a field value may not hold).
pub fn value_ok(base: &str, value: &str) -> Result<(), ValidationError> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(ValidationError::new(base, "holds CR, LF or NUL"));
    }
    http::HeaderValue::from_str(value)
        .map(drop)
        .map_err(|_| ValidationError::new(base, "holds a character a field value may not"))
}

impl RawRules {
    fn convert(&self, base: &str, request: bool, errors: &mut Vec<ValidationError>) -> FieldRules {
        let mut out = FieldRules::default();
        for (i, n) in self.remove.iter().enumerate() {
            match name_ok(&format!("{base}.remove[{i}]"), n, request) {
                Ok(n) => out.remove.push(n),
                Err(e) => errors.push(e),
            }
        }
        for (list, into, what) in [
            (&self.set, &mut out.set, "set"),
            (&self.add, &mut out.add, "add"),
        ] {
            for (n, v) in list {
                let field = format!("{base}.{what}.{n}");
                match name_ok(&field, n, request).and_then(|n| value_ok(&field, v).map(|()| n)) {
                    Ok(n) => into.push((n, v.clone())),
                    Err(e) => errors.push(e),
                }
            }
        }
        out
    }
}

impl Raw {
    pub(super) fn convert(&self, cx: &Cx<'_>) -> Result<Headers, Vec<ValidationError>> {
        let base = cx.base;
        let mut errors = Vec::new();
        let request = self
            .request
            .convert(&format!("{base}.request"), true, &mut errors);
        let response = self
            .response
            .convert(&format!("{base}.response"), false, &mut errors);
        for (field, v) in [
            ("referrer_policy", &self.referrer_policy),
            ("content_security_policy", &self.content_security_policy),
        ] {
            if let Some(v) = v {
                if let Err(e) = value_ok(&format!("{base}.{field}"), v) {
                    errors.push(e);
                }
            }
        }
        let sts = self.sts_seconds.map(|s| Hsts {
            max_age: s,
            include_subdomains: self.sts_include_subdomains,
            preload: self.sts_preload,
        });
        if let Some(p) = sts.and_then(|h| h.preload_problem()) {
            errors.push(ValidationError::new(format!("{base}.sts_preload"), p));
        }
        if sts.is_none() && (self.sts_include_subdomains || self.sts_preload) {
            errors.push(ValidationError::new(
                format!("{base}.sts_seconds"),
                "is missing: sts_include_subdomains and sts_preload need it",
            ));
        }
        let security = Security {
            frame_deny: self.frame_deny,
            content_type_nosniff: self.content_type_nosniff,
            browser_xss_filter: self.browser_xss_filter,
            referrer_policy: self.referrer_policy.clone(),
            content_security_policy: self.content_security_policy.clone(),
            sts,
        };
        let h = Headers {
            request,
            response,
            security,
        };
        if errors.is_empty()
            && h.request.is_empty()
            && h.response.is_empty()
            && h.security == Security::default()
        {
            errors.push(ValidationError::new(
                base,
                "edits nothing: give request, response or a security field",
            ));
        }
        if errors.is_empty() {
            Ok(h)
        } else {
            Err(errors)
        }
    }
}
