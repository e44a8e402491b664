use super::*;
use crate::headers::ReadFields;
use crate::http1::fields::Mask;

fn served(head: &[u8]) -> (Scan, Fields) {
    let mut fields = Fields::new();
    match scan(head, &mut fields, &Limits::default()) {
        Ok(Some(s)) => (s, fields),
        Ok(None) => panic!("partial: {}", String::from_utf8_lossy(head)),
        Err(e) => panic!("not served ({e:?}): {}", String::from_utf8_lossy(head)),
    }
}

fn handed_over(head: &[u8]) -> bool {
    scan(head, &mut Fields::new(), &Limits::default()).is_err()
}

#[test]
fn ordinary_requests_are_served_here_with_the_right_persistence() {
    let (s, fields) = served(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(s.keep_alive && !s.is_head && s.body_len == 0);
    let msg = Bytes::from_static(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = s.received(msg, fields).unwrap();
    assert_eq!((r.target.as_str(), r.target.path()), ("/a?b=1", "/a"));
    assert_eq!(r.host_value(), Some(&b"x"[..]));
    assert!(
        !served(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")
            .0
            .keep_alive
    );
    assert!(!served(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
    assert!(
        served(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .0
            .keep_alive
    );
    assert!(
        !served(b"GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n")
            .0
            .keep_alive
    );
    assert!(served(b"HEAD / HTTP/1.1\r\n\r\n").0.is_head);
    let post = served(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello").0;
    assert_eq!((post.head_len, post.body_len), (38, 5));
}

#[test]
fn anything_unusual_is_handed_to_hyper() {
    for head in [
        &b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
        b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: keep-alive, upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: close, x-secret\r\nX-Secret: 1\r\n\r\n",
        b"GET http://x/ HTTP/1.1\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        b"CONNECT x:443 HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
    ] {
        assert!(handed_over(head), "{}", String::from_utf8_lossy(head));
    }
    let many: String = (0..MAX_HEADERS + 1)
        .map(|i| format!("x-{i}: 1\r\n"))
        .collect();
    assert!(handed_over(
        format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()
    ));
    let partial = scan(
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        &mut Fields::new(),
        &Limits::default(),
    );
    assert!(matches!(partial, Ok(None)));
}

#[test]
fn a_chunked_request_is_taken_with_its_head_alone() {
    let raw = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n5\r\nhello\r\n";
    assert!(!handed_over(raw));
    let mut buf = BytesMut::from(&raw[..]);
    let Ok(Some(t)) = take(&mut buf, &Limits::default()) else {
        panic!("taken")
    };
    assert!(t.request.chunked);
    assert_eq!(t.request.message.len(), t.request.head_len, "no body in it");
    assert_eq!(&buf[..], b"5\r\nhello\r\n", "the body is left to decode");
    let mut out = Vec::new();
    t.request
        .fields
        .write_without(t.request.head(), Mask::default(), &mut out);
    let out = String::from_utf8(out).unwrap();
    assert!(
        !out.to_ascii_lowercase().contains("transfer-encoding"),
        "{out}"
    );
}

/// The request `raw` as `front` takes it.
fn received(raw: &'static [u8]) -> Box<Received> {
    let (s, fields) = served(raw);
    s.received(Bytes::from_static(raw), fields).unwrap()
}

#[test]
fn fields_are_sorted_by_what_tether_does_with_them() {
    let r = received(
        b"GET / HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6\r\nhost: a\r\nConnection: keep-alive, TE\r\n\
          TE: trailers\r\nCookie: a=1\r\nX-Real-IP: 6\r\nOrigin: b\r\ncookie: b=2\r\nAccept: */*\r\n\r\n",
    );
    assert_eq!(
        (r.forwarded_for, r.forwarding, r.cookies),
        (Mask::of(0), Mask::of(5), Mask::of(4) | Mask::of(7))
    );
    assert_eq!((r.host, r.host_value()), (Some(1), Some(&b"a"[..])));
    let mut kept = Vec::new();
    r.fields.write(r.head(), &mut kept);
    assert_eq!(
        String::from_utf8(kept).unwrap(),
        "X-Forwarded-For: 6.6.6.6\r\nhost: a\r\nCookie: a=1\r\nX-Real-IP: 6\r\nOrigin: b\r\n\
         cookie: b=2\r\nAccept: */*\r\n",
        "Connection and the TE it names stop here"
    );
    let values: Vec<_> = r.values("cookie").collect();
    assert_eq!(values, [&b"a=1"[..], b"b=2"], "names match in any case");
    let xff: Vec<_> = r.values("X-Forwarded-For").collect();
    assert_eq!(
        xff,
        [&b"6.6.6.6"[..]],
        "sorted fields are read by their mask"
    );
    let others: Vec<_> = r.values("x-real-ip").chain(r.values("ACCEPT")).collect();
    assert_eq!(others, [&b"6"[..], b"*/*"], "other names are looked for");
    assert_eq!(r.values("referer").count(), 0);
    let post = received(b"POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(
        (post.content_length, &post.message[post.head_len..]),
        (Some(2), &b"hi"[..])
    );
}

#[test]
fn a_received_request_goes_on_as_it_came_less_what_stops_at_tether() {
    use crate::headers::{ForwardedHost, Forwarding, Peer};
    use crate::route::sticky::CookieEdit;
    use crate::upstream::exchange::Outgoing;
    let r = received(
        b"POST /p?q=1 HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 6.6.6.6\r\nKeep-Alive: 5\r\n\
          Cookie: SRV=x\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6;proto=https\r\n\
          Content-Length: 2\r\nAccept: */*\r\n\r\nhi",
    );
    let body = || ClientBody::Whole(r.message.slice(r.head_len..));
    let untrusted = Peer::new("127.0.0.1:5000".parse().unwrap(), &[]);
    let fwd = Forwarding::new(&*r, &untrusted, ForwardedHost::HostHeader);
    let out = Outgoing::received(&r, &fwd, &CookieEdit::Remove, &Default::default(), body());
    assert_eq!(
        String::from_utf8_lossy(out.head()),
        "POST /p?q=1 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\nAccept: */*\r\n\
         x-forwarded-for: 127.0.0.1\r\nx-real-ip: 127.0.0.1\r\nx-forwarded-proto: http\r\n\
         forwarded: for=127.0.0.1;proto=http\r\nx-forwarded-host: a.test\r\n\r\n",
        "an untrusted client's forwarding fields are replaced by the connection's"
    );
    let trusted = Peer::new(
        "10.0.0.1:5000".parse().unwrap(),
        &[tether_model::file_config::Cidr::parse("10.0.0.0/8").unwrap()],
    );
    let fwd = Forwarding::new(&*r, &trusted, ForwardedHost::HostHeader);
    let edit = CookieEdit::Replace(http::HeaderValue::from_static("app=1"));
    let out = Outgoing::received(&r, &fwd, &edit, &Default::default(), body());
    assert_eq!(
        String::from_utf8_lossy(out.head()),
        "POST /p?q=1 HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-Proto: https\r\n\
         Content-Length: 2\r\nAccept: */*\r\ncookie: app=1\r\n\
         x-forwarded-for: 6.6.6.6, 10.0.0.1\r\nx-real-ip: 10.0.0.1\r\n\
         forwarded: for=6.6.6.6;proto=https, for=10.0.0.1;proto=http\r\n\
         x-forwarded-host: a.test\r\n\r\n",
        "a trusted proxy's forwarding fields are kept or extended"
    );
    let bare = received(b"GET / HTTP/1.0\r\n\r\n");
    let fwd = Forwarding::new(&*bare, &untrusted, ForwardedHost::Name(""));
    let out = Outgoing::received(
        &bare,
        &fwd,
        &CookieEdit::Keep,
        &Default::default(),
        ClientBody::Whole(Bytes::new()),
    );
    assert!(
        String::from_utf8_lossy(out.head())
            .starts_with("GET / HTTP/1.1\r\nhost: \r\nx-forwarded-for"),
        "{:?}",
        String::from_utf8_lossy(out.head())
    );
}

#[test]
fn a_target_the_http_types_refuse_hands_the_request_over() {
    // httparse takes `<` and `>` in a request target; `http::Uri` does not.
    let head = b"GET /a<b> HTTP/1.1\r\nHost: x\r\n\r\n";
    let (s, fields) = served(head);
    assert!(s.received(Bytes::from_static(head), fields).is_err());
    let mut buf = BytesMut::from(&b"GET /a<b> HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"[..]);
    let Err(Out::Handoff(rest)) = take(&mut buf, &Limits::default()) else {
        panic!("not handed over")
    };
    assert_eq!(
        &rest[..],
        b"GET /a<b> HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"
    );
    assert!(buf.is_empty());
}

/// What a response looks like on the wire.
async fn written(
    resp: http::Response<crate::upstream::body::ProxyBody>,
    is_head: bool,
    version: Version,
    keep: bool,
) -> (String, bool) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut client = tokio::net::TcpStream::connect(l.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = l.accept().await.unwrap();
    let mut io = Tracked::new(server, Activity::new());
    let kept = respond(&mut io, resp.into(), is_head, version, keep).await;
    drop(io);
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut client, &mut out)
        .await
        .unwrap();
    (String::from_utf8(out).unwrap(), kept)
}

#[tokio::test]
async fn responses_are_delimited_dated_and_say_when_the_connection_closes() {
    use crate::upstream::body::ProxyBody;
    use http::Response;
    let ok = || Response::new(ProxyBody::full("hello"));
    let (w, kept) = written(ok(), false, Version::HTTP_11, true).await;
    assert!(kept);
    assert!(w.starts_with("HTTP/1.1 200 OK\r\n"), "{w}");
    assert!(
        w.contains("\r\ndate: ") && w.contains("\r\ncontent-length: 5\r\n"),
        "{w}"
    );
    assert!(
        w.ends_with("\r\n\r\nhello") && !w.contains("connection:"),
        "{w}"
    );

    let (w, kept) = written(ok(), true, Version::HTTP_11, true).await;
    assert!(
        kept && w.ends_with("\r\n\r\n"),
        "a HEAD answer has no body: {w}"
    );

    let (w, kept) = written(ok(), false, Version::HTTP_10, true).await;
    assert!(kept && w.contains("\r\nconnection: keep-alive\r\n"), "{w}");

    let (w, kept) = written(ok(), false, Version::HTTP_11, false).await;
    assert!(!kept && w.contains("\r\nconnection: close\r\n"), "{w}");

    let mut odd = Response::new(ProxyBody::empty());
    *odd.status_mut() = StatusCode::from_u16(299).unwrap();
    odd.extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(b"Fine Enough"));
    let (w, _) = written(odd, false, Version::HTTP_11, true).await;
    assert!(w.starts_with("HTTP/1.1 299 Fine Enough\r\n"), "{w}");
    assert!(w.contains("\r\ncontent-length: 0\r\n"), "{w}");
}

#[test]
fn the_date_is_the_wall_clocks_to_the_second() {
    for _ in 0..3 {
        let mut text = Vec::new();
        http_date(|d| text.extend_from_slice(d));
        let date = httpdate::parse_http_date(std::str::from_utf8(&text).unwrap()).unwrap();
        let now = std::time::SystemTime::now();
        let behind = now.duration_since(date).unwrap_or_default();
        // Whole seconds: up to one second behind, plus the coarse clock's tick.
        assert!(
            behind < std::time::Duration::from_millis(1100),
            "{behind:?} behind"
        );
        assert!(
            date <= now + std::time::Duration::from_millis(50),
            "ahead of the clock"
        );
    }
}

#[test]
fn a_complete_head_over_the_limit_is_refused_however_it_arrived() {
    // All in the buffer at once, as one read into a reused, enlarged buffer leaves it.
    let head = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(65 * 1024)
    );
    let mut buf = BytesMut::from(head.as_bytes());
    assert!(matches!(take(&mut buf, &Limits::default()), Err(Out::Refuse(s, _)) if s == TOO_LARGE));
    // Incomplete and already over the limit: refused too, not handed to hyper.
    let mut buf = BytesMut::from(&head.as_bytes()[..head.len() - 4]);
    assert!(matches!(take(&mut buf, &Limits::default()), Err(Out::Refuse(s, _)) if s == TOO_LARGE));
}

#[test]
fn two_host_fields_are_refused() {
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"[..]);
    assert!(
        matches!(take(&mut buf, &Limits::default()), Err(Out::Refuse(s, _)) if s == StatusCode::BAD_REQUEST)
    );
}
