//! `strip_prefix_regex`: the start of the path that the first matching regex matches is removed,
//! as Traefik's `stripprefixregex`, and `X-Forwarded-Prefix` carries it.

use super::{Flow, Request};

#[derive(Debug)]
pub struct StripPrefixRegex {
    regex: Box<[regex::Regex]>,
}

impl StripPrefixRegex {
    pub fn new(d: &tether_model::middleware::StripPrefixRegex) -> Result<StripPrefixRegex, String> {
        // Anchored at the start of the path, as a prefix must be.
        let regex = d
            .regex
            .iter()
            .map(|r| tether_model::middleware::regex(&format!("^(?:{r})")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StripPrefixRegex {
            regex: regex.into(),
        })
    }

    pub fn request(&self, r: &mut Request<'_, '_>) -> Flow {
        let path = r.path();
        let Some(m) = self.regex.iter().find_map(|re| re.find(path)) else {
            return Flow::Next;
        };
        let (prefix, rest) = (path[..m.end()].to_string(), path[m.end()..].to_string());
        super::strip_prefix::strip(r, prefix.trim_end_matches('/'), &rest)
    }
}
