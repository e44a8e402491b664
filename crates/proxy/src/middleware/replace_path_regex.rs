//! `replace_path_regex`: when the regex matches the path, each match is replaced (as Go's
//! `ReplaceAllString`, which Traefik uses) by the replacement with
//! `$1` and `${name}` expanded (the query is kept), and `X-Replaced-Path` carries the original.

use super::{Flow, Request};

#[derive(Debug)]
pub struct ReplacePathRegex {
    regex: regex::Regex,
    replacement: String,
}

impl ReplacePathRegex {
    pub fn new(d: &tether_model::middleware::ReplacePathRegex) -> Result<ReplacePathRegex, String> {
        Ok(ReplacePathRegex {
            regex: tether_model::middleware::regex(&d.regex)?,
            replacement: d.replacement.clone(),
        })
    }

    pub fn request(&self, r: &mut Request<'_, '_>) -> Flow {
        let old = r.path().to_string();
        if !self.regex.is_match(&old) {
            return Flow::Next;
        }
        let new = self
            .regex
            .replace_all(&old, self.replacement.as_str())
            .into_owned();
        if let Err(answer) = r.rewrite(&new) {
            return answer;
        }
        r.set("x-replaced-path", &old);
        Flow::Next
    }
}
