//! The labels that ask for an ACME certificate, read alike in Tether's and Traefik's dialects:
//! `…routers.<r>.tls.domains[n].main` and `…tls.domains[n].sans` (comma-separated), beside the
//! resolver (`tls.resolver` in Tether's, `tls.certresolver` in Traefik's).

use std::collections::BTreeMap;

use crate::acme::Domain;

/// The `tls.domains[n].*` labels of one router, by index.
#[derive(Debug, Default)]
pub(crate) struct DomainLabels<'a> {
    by_index: BTreeMap<u32, Entry<'a>>,
}

#[derive(Debug, Default)]
struct Entry<'a> {
    main: Option<&'a str>,
    sans: Vec<String>,
    /// The first label of this domain, which errors name.
    key: &'a str,
}

impl<'a> DomainLabels<'a> {
    /// Take `field` (lower case, after the router's name) if it is a `tls.domains[n].*` one:
    /// `None` if it is not, `Some(Err(message))` if it is malformed.
    pub(crate) fn take(
        &mut self,
        field: &str,
        key: &'a str,
        value: &'a str,
    ) -> Option<Result<(), String>> {
        let rest = field.strip_prefix("tls.domains")?;
        let form = "expected tls.domains[N].main or tls.domains[N].sans, N from 0";
        let Some((index, leaf)) = rest.strip_prefix('[').and_then(|r| r.split_once("].")) else {
            return Some(Err(form.into()));
        };
        let Ok(index) = index.parse::<u32>() else {
            return Some(Err(form.into()));
        };
        if index > 99 {
            return Some(Err("at most 100 domains (tls.domains[0] to [99])".into()));
        }
        let e = self.by_index.entry(index).or_insert_with(|| Entry {
            key,
            ..Default::default()
        });
        match leaf {
            "main" => e.main = Some(value.trim()),
            "sans" => e.sans = super::list(value),
            _ => return Some(Err(form.into())),
        }
        Some(Ok(()))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }

    /// The domains in index order; an error names the first label of a domain with no `main`.
    pub(crate) fn domains(&self) -> Result<Vec<Domain>, (&'a str, String)> {
        let mut out = Vec::new();
        for (i, e) in &self.by_index {
            match e.main {
                Some(m) if !m.is_empty() => out.push(Domain {
                    main: m.to_string(),
                    sans: e.sans.clone(),
                }),
                _ => {
                    return Err((
                        e.key,
                        format!("tls.domains[{i}] has no main name: set tls.domains[{i}].main"),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// The first label of the domains, which a translation error names.
    pub(crate) fn first_key(&self) -> Option<&'a str> {
        self.by_index.values().next().map(|e| e.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_read_by_index_and_need_a_main_name() {
        let mut d = DomainLabels::default();
        assert!(d.take("rule", "k", "v").is_none());
        assert!(d
            .take("tls.domains[1].main", "k1", "b.example")
            .unwrap()
            .is_ok());
        assert!(d
            .take("tls.domains[0].sans", "k0", "x.example, y.example")
            .unwrap()
            .is_ok());
        assert!(d
            .take("tls.domains[0].main", "k0m", "a.example")
            .unwrap()
            .is_ok());
        assert!(d.take("tls.domains[x].main", "k", "v").unwrap().is_err());
        assert!(d.take("tls.domains[0].other", "k", "v").unwrap().is_err());
        let got = d.domains().unwrap();
        assert_eq!(got[0].names(), ["a.example", "x.example", "y.example"]);
        assert_eq!(got[1].names(), ["b.example"]);
        let mut d = DomainLabels::default();
        d.take("tls.domains[0].sans", "only-sans", "x.example")
            .unwrap()
            .unwrap();
        let (k, m) = d.domains().unwrap_err();
        assert_eq!(k, "only-sans");
        assert!(m.contains("no main name"), "{m}");
    }
}
