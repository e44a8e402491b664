//! Hostile HTTP/2 in raw frames, both as h2c (prior knowledge) on the plain entrypoint and as h2
//! over TLS (ALPN) on the TLS one: rapid reset, CONTINUATION flood, `:authority` against `host`,
//! forwarding fields with underscores; each asserting what reached the recording server.

use std::time::Duration;

use tether_testkit::h2raw::{
    self, frame, CONTINUATION, END_HEADERS, END_STREAM, HEADERS, RST_STREAM,
};
use tether_testkit::recorder::Recorder;
use tether_testkit::tls::TestCert;
use tether_testkit::TempDir;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::support::{Proxy, KEY, WEB};

/// A connection to abuse: h2c or h2 over TLS.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// Tether with a plain entrypoint and a TLS one (its certificate in `dir`) in front of `rec`.
async fn proxy(rec: &Recorder, dir: &TempDir) -> Proxy {
    let cert = TestCert::write(dir.path(), "a", &["a.test"]);
    let toml = format!(
        "{WEB}websecure = {{ address = \"127.0.0.1:0\", tls = true }}\n{KEY}{}\
         [routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n[services.web]\nservers = [{{ url = \"{}\" }}]\n",
        cert.toml(true),
        rec.url()
    );
    Proxy::start(&toml).await
}

/// A connection that has sent the preface: h2c, or h2 chosen by ALPN over TLS.
async fn open(p: &Proxy, tls: bool) -> Box<dyn Conn> {
    if !tls {
        return Box::new(h2raw::connect(p.addr()).await);
    }
    let h = tether_testkit::tls::connect(p.instance.addr("websecure"), Some("a.test"), &["h2"])
        .await
        .expect("TLS handshake");
    assert_eq!(h.alpn.as_deref(), Some(&b"h2"[..]));
    Box::new(h2raw::hello(h.stream).await)
}

const OVER: [(bool, &str); 2] = [(false, "h2c"), (true, "h2 over TLS")];

const QUIET: Duration = Duration::from_millis(500);

#[tokio::test]
async fn a_rapid_reset_flood_ends_the_connection_and_spares_the_server() {
    for (tls, over) in OVER {
        let dir = TempDir::new("tether-h2-reset");
        let rec = Recorder::spawn().await;
        let p = proxy(&rec, &dir).await;
        let mut s = open(&p, tls).await;
        let mut flood = Vec::new();
        let n = 5000u32;
        for i in 0..n {
            let id = 2 * i + 1;
            flood.extend(frame(
                HEADERS,
                END_STREAM | END_HEADERS,
                id,
                &h2raw::get("a", "/reset"),
            ));
            flood.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
        }
        let _ = s.write_all(&flood).await; // the server may close while this is being written
        let frames = h2raw::read_frames(&mut s, QUIET).await;
        let code = h2raw::goaway(&frames);
        assert!(
            code.is_some(),
            "{over}: no GOAWAY after {n} resets: {} frames",
            frames.len()
        );
        let reached = rec.requests().len();
        println!("rapid reset ({over}): {n} streams opened and cancelled, GOAWAY code {code:?}, {reached} requests reached the server");
        assert!(
            (reached as u32) < n / 2,
            "{over}: {reached} of {n} cancelled requests reached the server"
        );
    }
}

#[tokio::test]
async fn a_continuation_flood_ends_the_connection_before_any_request() {
    for (tls, over) in OVER {
        let dir = TempDir::new("tether-h2-continuation");
        let rec = Recorder::spawn().await;
        let p = proxy(&rec, &dir).await;
        let mut s = open(&p, tls).await;
        let mut first = h2raw::get("a", "/flood");
        first.extend(h2raw::literal("x-pad", &"p".repeat(100)));
        let mut flood = frame(HEADERS, END_STREAM, 1, &first);
        let block: Vec<u8> = (0..100)
            .flat_map(|i| h2raw::literal(&format!("x-c{i}"), &"v".repeat(100)))
            .collect();
        for _ in 0..2000 {
            flood.extend(frame(CONTINUATION, 0, 1, &block)); // never END_HEADERS
        }
        let _ = s.write_all(&flood).await;
        let frames = h2raw::read_frames(&mut s, QUIET).await;
        assert!(
            h2raw::goaway(&frames).is_some() || frames.iter().any(|f| f.0 == RST_STREAM),
            "{over}: the flood was not stopped: {} frames",
            frames.len()
        );
        assert!(rec.requests().is_empty(), "{over}: {:?}", rec.requests());
    }
}

#[tokio::test]
async fn authority_against_host_and_underscored_forwarding_fields() {
    for (tls, over) in OVER {
        let dir = TempDir::new("tether-h2-authority");
        let rec = Recorder::spawn().await;
        let p = proxy(&rec, &dir).await;
        let mut s = open(&p, tls).await;
        // Stream 1: :authority a with a host field naming another: refused.
        let mut conflict = h2raw::get("a", "/conflict");
        conflict.extend(h2raw::literal("host", "evil"));
        // Stream 3: forwarding fields spelt with underscores: they stop here.
        let mut spoof = h2raw::get("a", "/spoof");
        spoof.extend(h2raw::literal("x_forwarded_for", "6.6.6.6"));
        let mut out = frame(HEADERS, END_STREAM | END_HEADERS, 1, &conflict);
        out.extend(frame(HEADERS, END_STREAM | END_HEADERS, 3, &spoof));
        s.write_all(&out).await.unwrap();
        let frames = h2raw::read_frames(&mut s, QUIET).await;
        let statuses = h2raw::statuses(&frames);
        assert!(statuses.contains(&(1, 400)), "{over}: {statuses:?}");
        assert!(statuses.contains(&(3, 200)), "{over}: {statuses:?}");
        let seen: Vec<String> = rec
            .requests()
            .iter()
            .map(|r| r.to_ascii_lowercase())
            .collect();
        assert_eq!(seen.len(), 1, "{over}: {seen:?}");
        assert!(seen[0].starts_with("get /spoof "), "{over}: {seen:?}");
        assert!(
            !seen[0].contains("6.6.6.6") && !seen[0].contains("evil"),
            "{over}: {seen:?}"
        );
    }
}
