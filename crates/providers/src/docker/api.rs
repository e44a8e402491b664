//! A read-only client for the Docker Engine API over its Unix socket (or `tcp://`).
//!
//! It can only send `GET`: ping, version, the container list, one container's inspection, the
//! Swarm's lists (services, tasks, nodes, networks) and the event stream. There is no method to start, stop or change anything, so Tether cannot alter the
//! engine even by mistake, and the socket can be mounted read-only.

use std::path::PathBuf;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// Newest API version Tether speaks; older engines (down to 1.24) are spoken to in their own.
const MAX_API: (u32, u32) = (1, 41);
const MIN_API: (u32, u32) = (1, 24);
/// Time limit for one request (not for the event stream).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read (the container list of a big host is a few MB).
const MAX_BODY: usize = 64 << 20;

/// Where the engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl Endpoint {
    /// `unix:///var/run/docker.sock`, `/var/run/docker.sock` or `tcp://host:2375`.
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        if let Some(p) = s.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(p.into()));
        }
        if s.starts_with('/') {
            return Ok(Endpoint::Unix(s.into()));
        }
        if let Some(a) = s
            .strip_prefix("tcp://")
            .or_else(|| s.strip_prefix("http://"))
        {
            let a = a.trim_end_matches('/');
            if a.is_empty() || a.contains('/') {
                return Err(format!("{s:?}: expected tcp://host:port"));
            }
            return Ok(Endpoint::Tcp(a.to_string()));
        }
        Err(format!(
            "{s:?}: expected unix:///var/run/docker.sock or tcp://host:port (TLS endpoints are not supported)"
        ))
    }

    /// `DOCKER_HOST`, else the default socket.
    pub fn from_env() -> Result<Endpoint, String> {
        match std::env::var("DOCKER_HOST") {
            Ok(h) if !h.is_empty() => Endpoint::parse(&h),
            _ => Ok(Endpoint::Unix("/var/run/docker.sock".into())),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// Why talking to the engine failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot connect to the Docker engine at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("GET {path}: {source}")]
    Http { path: String, source: hyper::Error },
    #[error("GET {path}: answered {status}: {message}")]
    Status {
        path: String,
        status: http::StatusCode,
        message: String,
    },
    #[error("GET {path}: no answer within {REQUEST_TIMEOUT:?}")]
    Timeout { path: String },
    #[error("GET {path}: unreadable answer: {message}")]
    Decode { path: String, message: String },
    #[error("the Docker engine speaks API {0}, older than the 1.24 Tether needs")]
    TooOld(String),
    #[error("--docker-self {name}: no running container has this name or id")]
    NotSelf { name: String },
}

impl ApiError {
    /// The engine answered 404 (the container is gone).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Status { status, .. } if *status == http::StatusCode::NOT_FOUND)
    }
}

/// The client. Cheap to clone; each request opens its own connection (the socket is local).
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
    /// `/v1.41` once negotiated.
    prefix: String,
}

impl Client {
    /// Connect and agree on an API version (`GET /_ping`).
    pub async fn connect(endpoint: Endpoint) -> Result<Client, ApiError> {
        let mut c = Client {
            endpoint,
            prefix: String::new(),
        };
        let resp = c.send("/_ping").await?;
        let engine = resp
            .headers()
            .get("api-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("1.24")
            .to_string();
        let v = parse_version(&engine).ok_or_else(|| ApiError::TooOld(engine.clone()))?;
        if v < MIN_API {
            return Err(ApiError::TooOld(engine));
        }
        let (major, minor) = v.min(MAX_API);
        c.prefix = format!("/v{major}.{minor}");
        Ok(c)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The negotiated API version, e.g. `1.41`.
    pub fn api_version(&self) -> &str {
        self.prefix.trim_start_matches("/v")
    }

    /// `GET <path>` under the negotiated version, decoded from JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let full = format!("{}{path}", self.prefix);
        let work = async {
            let resp = self.send(&full).await?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| ApiError::Decode {
                    path: full.clone(),
                    message: e.to_string(),
                })?
                .to_bytes();
            if !status.is_success() {
                return Err(status_error(&full, status, &body));
            }
            serde_json::from_slice(&body).map_err(|e| ApiError::Decode {
                path: full.clone(),
                message: e.to_string(),
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, work)
            .await
            .map_err(|_| ApiError::Timeout { path: full.clone() })?
    }

    /// `GET /events` filtered to container and network events: a stream that lasts until the
    /// engine closes it.
    pub async fn events(&self) -> Result<EventStream, ApiError> {
        self.events_of(&["container", "network"]).await
    }

    /// `GET /events` filtered to events of these types (`container`, `service`, `node`, ...).
    pub async fn events_of(&self, types: &[&str]) -> Result<EventStream, ApiError> {
        let filters = serde_json::json!({ "type": types }).to_string();
        let filters = filters.as_str();
        let path = format!("{}/events?filters={}", self.prefix, encode(filters));
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.send(&path))
            .await
            .map_err(|_| ApiError::Timeout { path: path.clone() })??;
        if !resp.status().is_success() {
            return Err(status_error(&path, resp.status(), b""));
        }
        Ok(EventStream {
            body: resp.into_body(),
            buf: BytesMut::new(),
            path,
        })
    }

    async fn send(&self, path: &str) -> Result<http::Response<Incoming>, ApiError> {
        let connect_err = |source| ApiError::Connect {
            endpoint: self.endpoint.to_string(),
            source,
        };
        match &self.endpoint {
            Endpoint::Unix(p) => {
                let io = UnixStream::connect(p).await.map_err(connect_err)?;
                get(io, path).await
            }
            Endpoint::Tcp(a) => {
                let io = TcpStream::connect(a).await.map_err(connect_err)?;
                get(io, path).await
            }
        }
    }
}

/// The only request this module can make.
async fn get<IO>(io: IO, path: &str) -> Result<http::Response<Incoming>, ApiError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http_err = |source| ApiError::Http {
        path: path.to_string(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(http_err)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "docker connection ended");
        }
    });
    let req = http::Request::get(path)
        .header(http::header::HOST, "docker")
        .header(http::header::USER_AGENT, "tether")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::Decode {
            path: path.to_string(),
            message: e.to_string(),
        })?;
    sender.send_request(req).await.map_err(http_err)
}

fn status_error(path: &str, status: http::StatusCode, body: &[u8]) -> ApiError {
    #[derive(serde::Deserialize)]
    struct Msg {
        message: String,
    }
    let message = serde_json::from_slice::<Msg>(body)
        .map(|m| m.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_string());
    ApiError::Status {
        path: path.to_string(),
        status,
        message,
    }
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Percent-encoding for a query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The engine's event stream, decoded one JSON object at a time.
pub struct EventStream {
    body: Incoming,
    buf: BytesMut,
    path: String,
}

impl EventStream {
    /// The next event; `Ok(None)` when the engine closed the stream.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ApiError> {
        loop {
            let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<T>();
            match it.next() {
                Some(Ok(v)) => {
                    let used = it.byte_offset();
                    self.buf.advance(used);
                    return Ok(Some(v));
                }
                Some(Err(e)) if !e.is_eof() => {
                    return Err(ApiError::Decode {
                        path: self.path.clone(),
                        message: e.to_string(),
                    })
                }
                _ => {}
            }
            // Incomplete (or only whitespace): read more.
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(source)) => {
                    return Err(ApiError::Http {
                        path: self.path.clone(),
                        source,
                    })
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("unix:///var/run/docker.sock").unwrap(),
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:2375").unwrap(),
            Endpoint::Tcp("127.0.0.1:2375".into())
        );
        assert!(Endpoint::parse("ssh://host")
            .unwrap_err()
            .contains("expected"));
    }

    #[test]
    fn filters_are_encoded() {
        assert_eq!(encode(r#"{"a":["b"]}"#), "%7B%22a%22%3A%5B%22b%22%5D%7D");
    }
}
