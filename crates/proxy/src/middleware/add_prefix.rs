//! `add_prefix`: the prefix is put before the path (`/cart` → `/shop/cart`).

use super::{Flow, Request};

#[derive(Debug)]
pub struct AddPrefix {
    prefix: String,
}

impl AddPrefix {
    pub fn new(d: &tether_model::middleware::AddPrefix) -> AddPrefix {
        AddPrefix {
            prefix: d.prefix.clone(),
        }
    }

    pub fn request(&self, r: &mut Request<'_, '_>) -> Flow {
        let path = format!("{}{}", self.prefix, r.path());
        match r.rewrite(&path) {
            Ok(()) => Flow::Next,
            Err(answer) => answer,
        }
    }
}
