//! The hostile-input table: every class of malformed or abusive HTTP/1.1 input, the status Tether
//! answers and exactly what reached the recording server. `docs/security.md` shows this table;
//! each row there is a row here.

use std::time::Duration;

use tether_testkit::raw::{self, status};
use tether_testkit::recorder::Recorder;

use crate::support::{Proxy, KEY, WEB};

/// What the server may have seen of one input.
enum Reached {
    /// Nothing at all.
    Nothing,
    /// One request, whose head holds each of these (lower case) and none of the `absent` ones.
    Head {
        has: &'static [&'static str],
        absent: &'static [&'static str],
    },
}

struct Case {
    class: &'static str,
    input: Vec<u8>,
    status: u16,
    reached: Reached,
}

fn case(class: &'static str, input: &[u8], status: u16, reached: Reached) -> Case {
    Case {
        class,
        input: input.to_vec(),
        status,
        reached,
    }
}

fn cases() -> Vec<Case> {
    use Reached::*;
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "x".repeat(70 * 1024)
    );
    let big_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(70 * 1024));
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(9 * 1024));
    let many: String = (0..200).map(|i| format!("X-F{i}: v\r\n")).collect();
    let many_fields = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    vec![
        case("CL.TE: Content-Length and Transfer-Encoding", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 200,
            Head { has: &["transfer-encoding: chunked", "\r\n\r\n0\r\n\r\n"], absent: &["content-length"] }),
        case("TE.TE: obfuscated Transfer-Encoding (chunked, identity)", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\nContent-Length: 3\r\n\r\nabc", 400, Nothing),
        case("TE.TE: Transfer-Encoding with a space before the colon", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400, Nothing),
        case("TE.TE: xchunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400, Nothing),
        case("two Content-Length values", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400, Nothing),
        case("Content-Length not a number", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4x\r\n\r\nabcd", 400, Nothing),
        case("Content-Length with a sign", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd", 400, Nothing),
        case("bare CR in a field value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400, Nothing),
        case("bare LF line ends", b"GET / HTTP/1.1\nHost: a\nX-A: b\n\n", 200, Head { has: &["x-a: b\r\n"], absent: &[] }),
        case("NUL in a field value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n", 400, Nothing),
        case("obs-fold (a continuation line)", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400, Nothing),
        case("a field name with a space", b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", 400, Nothing),
        case("a head over 64 KiB", big_header.as_bytes(), 431, Nothing),
        case("a request target over 64 KiB", big_uri.as_bytes(), 431, Nothing),
        case("a request target over limits.uri (8 KiB)", long_uri.as_bytes(), 414, Nothing),
        case("more than 128 header fields", many_fields.as_bytes(), 431, Nothing),
        case("no Host in HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n", 400, Nothing),
        case("two Host fields", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, Nothing),
        case("absolute-form target beside another Host", b"GET http://a/abs HTTP/1.1\r\nHost: evil\r\n\r\n", 200,
            Head { has: &["get /abs http/1.1", "host: a\r\n"], absent: &["evil"] }),
        case("X-Forwarded-For, X-Real-IP, Forwarded from an untrusted client", b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\n\r\n", 200,
            Head { has: &["x-forwarded-for: 127.0.0.1", "x-real-ip: 127.0.0.1", "x-forwarded-proto: http\r\n", "x-forwarded-host: a\r\n", "forwarded: for=127.0.0.1;proto=http\r\n"], absent: &["6.6.6.6", "evil"] }),
        case("forwarding fields spelt with underscores", b"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\n\r\n", 200,
            Head { has: &["x-forwarded-for: 127.0.0.1"], absent: &["6.6.6.6"] }),
        case("Connection naming a field to strip (hop-by-hop abuse)", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Auth, keep-alive\r\nX-Auth: secret\r\nKeep-Alive: 5\r\nProxy-Authorization: x\r\nTE: trailers\r\n\r\n", 200,
            Head { has: &["get / http/1.1"], absent: &["x-auth", "keep-alive", "proxy-authorization", "te: trailers"] }),
        case("Connection naming Host (hop-by-hop abuse)", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n", 200,
            Head { has: &["host: a\r\n"], absent: &[] }),
        case("an Upgrade to h2c", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n", 200,
            Head { has: &["get / http/1.1"], absent: &["upgrade", "http2-settings"] }),
        case("a path climbing above the root", b"GET /../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", 400, Nothing),
        case("an encoded dot segment", b"GET /a/%2e%2e/b HTTP/1.1\r\nHost: a\r\n\r\n", 200, Head { has: &["get /b http/1.1"], absent: &["%2e"] }),
        case("%00 in the path", b"GET /a%00 HTTP/1.1\r\nHost: a\r\n\r\n", 400, Nothing),
        case("a backslash in the path", b"GET /a%5c..%5cb HTTP/1.1\r\nHost: a\r\n\r\n", 400, Nothing),
        case("a forged affinity cookie", b"GET / HTTP/1.1\r\nHost: a\r\nCookie: tether_web=AAAAAAAAAAAAAAAAAAAAAAAA\r\n\r\n", 200,
            Head { has: &["get / http/1.1"], absent: &["tether_web"] }),
        case("an oversized affinity cookie", format!("GET / HTTP/1.1\r\nHost: a\r\nCookie: tether_web={}\r\n\r\n", "A".repeat(8000)).as_bytes(), 200,
            Head { has: &["get / http/1.1"], absent: &["tether_web"] }),
    ]
}

#[tokio::test]
async fn every_hostile_input_gets_its_status_and_reaches_the_server_only_as_asserted() {
    let rec = Recorder::spawn().await;
    let toml = format!(
        "{WEB}{KEY}[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n[services.web]\nservers = [{{ name = \"rec\", url = \"{}\" }}]\n[services.web.affinity]\nmode = \"cookie\"\n",
        rec.url()
    );
    let p = Proxy::start(&toml).await;
    let mut failures = Vec::new();
    for c in cases() {
        let before = rec.requests().len();
        let answer = raw::exchange(p.addr(), &c.input, Duration::from_millis(400)).await;
        let got = status(&answer);
        let seen: Vec<String> = rec.requests()[before..]
            .iter()
            .map(|r| r.to_ascii_lowercase())
            .collect();
        let reached_ok = match &c.reached {
            Reached::Nothing => seen.is_empty(),
            Reached::Head { has, absent } => {
                seen.len() == 1
                    && has.iter().all(|h| seen[0].contains(h))
                    && absent.iter().all(|a| !seen[0].contains(a))
            }
        };
        if got != c.status || !reached_ok {
            failures.push(format!(
                "{}: answered {got} (want {}), server saw {seen:?}",
                c.class, c.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
