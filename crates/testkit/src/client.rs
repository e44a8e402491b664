//! A small HTTP/1.1 client for tests: one keep-alive connection, a cookie jar, whole bodies read.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A response, body read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// The body's bytes, as they came (decoded from the HTTP framing, not from any encoding).
    pub bytes: Bytes,
}

impl Reply {
    /// The answering whoami's name (`x-whoami-name`), or "" for Tether's own answers.
    pub fn server(&self) -> &str {
        self.headers
            .get("x-whoami-name")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The whoami JSON answer (request made with `?format=json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// All Set-Cookie values.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    }

    /// The visit count whoami reported.
    pub fn visits(&self) -> u64 {
        self.body
            .lines()
            .find_map(|l| l.strip_prefix("Visits: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no visit count in: {}", self.body))
    }
}

/// An HTTP/1.1 client bound to one address.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    conn: Option<SendRequest<Full<Bytes>>>,
    /// Cookies by name, sent on every request.
    pub jar: BTreeMap<String, String>,
    /// Host header sent when a request has none.
    pub host: String,
    /// Keep the cookie jar up to date from responses.
    pub keep_cookies: bool,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            conn: None,
            jar: BTreeMap::new(),
            host: "localhost".into(),
            keep_cookies: true,
        }
    }

    /// A client that never stores cookies.
    pub fn without_cookies(addr: SocketAddr) -> Client {
        Client {
            keep_cookies: false,
            ..Client::new(addr)
        }
    }

    pub async fn get(&mut self, path: &str) -> Result<Reply, String> {
        self.send(
            Request::get(path)
                .body(Full::default())
                .expect("valid request"),
        )
        .await
    }

    pub async fn send(&mut self, mut req: Request<Full<Bytes>>) -> Result<Reply, String> {
        let h = req.headers_mut();
        if !h.contains_key(header::HOST) {
            h.insert(
                header::HOST,
                HeaderValue::from_str(&self.host).map_err(|e| e.to_string())?,
            );
        }
        if !self.jar.is_empty() && !h.contains_key(header::COOKIE) {
            let c: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            h.insert(
                header::COOKIE,
                HeaderValue::from_str(&c.join("; ")).map_err(|e| e.to_string())?,
            );
        }
        let conn = self.connection().await?;
        let resp = conn.send_request(req).await.map_err(|e| {
            self.conn = None;
            format!("request failed: {e}")
        })?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body failed: {e}"))?
            .to_bytes();
        let reply = Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            bytes: body,
        };
        if self.keep_cookies {
            for c in reply.set_cookies() {
                let pair = c.split(';').next().unwrap_or_default();
                if let Some((k, v)) = pair.split_once('=') {
                    self.jar.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
        }
        Ok(reply)
    }

    async fn connection(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if let Some(c) = &mut self.conn {
            if c.ready().await.is_err() {
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect {}: {e}", self.addr))?;
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            self.conn = Some(send);
        }
        Ok(self.conn.as_mut().expect("just set"))
    }
}
