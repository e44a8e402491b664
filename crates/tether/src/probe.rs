//! `tether probe URL`: one GET, success on a 2xx answer. The HEALTHCHECK of images that have no
//! shell and no curl (`FROM scratch`).

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// GET `url` (`http://host:port/path`) and return the status, within `timeout`.
pub async fn get(url: &str, timeout: Duration) -> anyhow::Result<http::StatusCode> {
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
        let req = http::Request::get(path)
            .header(http::header::HOST, authority.as_str())
            .body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        anyhow::Ok(resp.status())
    };
    tokio::time::timeout(timeout, work)
        .await
        .with_context(|| format!("{url}: no answer within {timeout:?}"))?
}
