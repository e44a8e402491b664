//! A client for Tether's admin API: JSON in and out, the bearer token on every request.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::Full;

use crate::{Client, Reply};

/// Talks to one admin listener.
#[derive(Debug)]
pub struct Admin {
    client: Client,
    pub token: Option<String>,
}

impl Admin {
    pub fn new(addr: SocketAddr, token: Option<&str>) -> Admin {
        Admin {
            client: Client::without_cookies(addr),
            token: token.map(str::to_string),
        }
    }

    /// Send `method path` with an optional JSON body and extra headers.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method.clone()).uri(path);
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(b.to_string()))
            }
            None => Full::default(),
        };
        self.client
            .send(req.body(body).expect("valid request"))
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.call(Method::GET, path, None, &[]).await
    }

    pub async fn put(&mut self, path: &str, body: serde_json::Value) -> Reply {
        self.call(Method::PUT, path, Some(&body), &[]).await
    }

    /// `PUT` a text body (PEM, say) of `content_type`.
    pub async fn put_text(&mut self, path: &str, content_type: &str, text: &str) -> Reply {
        let mut req = Request::builder()
            .method(Method::PUT)
            .uri(path)
            .header(header::CONTENT_TYPE, content_type);
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.client
            .send(
                req.body(Full::new(Bytes::from(text.to_string())))
                    .expect("valid request"),
            )
            .await
            .unwrap_or_else(|e| panic!("PUT {path}: {e}"))
    }

    pub async fn delete(&mut self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None, &[]).await
    }

    /// `GET /api/version`'s `hash`.
    pub async fn version(&mut self) -> String {
        let r = self.get("/api/version").await;
        r.json()["hash"].as_str().unwrap_or_default().to_string()
    }
}
