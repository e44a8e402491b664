//! `replace_path`: the path becomes the one given (the query is kept), and `X-Replaced-Path`
//! carries the original.

use super::{Flow, Request};

#[derive(Debug)]
pub struct ReplacePath {
    path: String,
}

impl ReplacePath {
    pub fn new(d: &tether_model::middleware::ReplacePath) -> ReplacePath {
        ReplacePath {
            path: d.path.clone(),
        }
    }

    pub fn request(&self, r: &mut Request<'_, '_>) -> Flow {
        let old = r.path().to_string();
        if let Err(answer) = r.rewrite(&self.path) {
            return answer;
        }
        r.set("x-replaced-path", &old);
        Flow::Next
    }
}
