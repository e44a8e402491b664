//! `tether probe URL`: one GET, success on a 2xx answer. The HEALTHCHECK of images that have no
//! shell and no curl (`FROM scratch`), and with `--print` a way to read an admin API from inside
//! such a container (`docker exec proxy /tether probe --print http://127.0.0.1:8081/api/version`).

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Largest body `--print` reads.
const MAX_PRINT: usize = 16 << 20;

/// GET `url` (`http://host:port/path`) and return the status, within `timeout`.
pub async fn get(url: &str, timeout: Duration) -> anyhow::Result<http::StatusCode> {
    Ok(fetch(url, timeout, false, None).await?.0)
}

/// GET `url` and return the status and the body, within `timeout`.
/// `bearer`: a token sent as `Authorization: Bearer` (the admin API's).
pub async fn get_body(
    url: &str,
    timeout: Duration,
    bearer: Option<&str>,
) -> anyhow::Result<(http::StatusCode, Bytes)> {
    fetch(url, timeout, true, bearer).await
}

async fn fetch(
    url: &str,
    timeout: Duration,
    read_body: bool,
    bearer: Option<&str>,
) -> anyhow::Result<(http::StatusCode, Bytes)> {
    let bearer = bearer.map(|t| format!("Bearer {}", t.trim()));
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("{url:?}: only http:// URLs can be probed");
    }
    let authority = uri
        .authority()
        .with_context(|| format!("{url:?}: no host"))?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let work = async move {
        let io = TcpStream::connect((authority.host(), port)).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(conn);
        let mut req = http::Request::get(path).header(http::header::HOST, authority.as_str());
        if let Some(b) = &bearer {
            req = req.header(http::header::AUTHORIZATION, b);
        }
        let req = req.body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = if read_body {
            Limited::new(resp.into_body(), MAX_PRINT)
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("reading the body: {e}"))?
                .to_bytes()
        } else {
            Bytes::new()
        };
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(timeout, work)
        .await
        .with_context(|| format!("{url}: no answer within {timeout:?}"))?
}
