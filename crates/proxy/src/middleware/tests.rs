use std::collections::HashMap;

use tether_model::file_config;

use super::*;
use crate::edit::RequestEdits;

/// The chain of route `r` in a file's text.
fn chain(toml: &str) -> Chain {
    let cfg = file_config::parse(&format!(
        "entrypoints.web = \"127.0.0.1:80\"\n[services.app]\nservers = [{{ url = \"http://10.0.0.1:80\" }}]\n{toml}"
    ))
    .unwrap();
    let by_name: HashMap<&str, &MiddlewareDecl> = cfg
        .middlewares
        .iter()
        .map(|m| (m.name.as_str(), m))
        .collect();
    let cx = Context {
        middlewares: &by_name,
        tls_ports: &[("websecure".to_string(), 8443)],
        counters: &Counters::default(),
        secrets: &Secrets::default(),
    };
    Chain::compile(&cfg.routes[0], &cx).unwrap().unwrap()
}

fn route(middlewares: &str, decls: &str) -> Chain {
    chain(&format!(
        "[routes.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"app\"\nmiddlewares = [{middlewares}]\n{decls}"
    ))
}

struct Outcome {
    answer: Option<(u16, http::HeaderMap)>,
    path: Option<String>,
    set: Vec<(String, String)>,
}

fn run(c: &Chain, req: http::Request<()>, https: bool, peer: &str) -> Outcome {
    let trusted = [file_config::Cidr::parse("10.0.0.0/8").unwrap()];
    let peer = Peer::on(peer.parse().unwrap(), &trusted, https);
    let head = RequestHead::Parts(Box::new(req.into_parts().0));
    let mut edits = RequestEdits::default();
    let host = match &head {
        RequestHead::Parts(p) => p
            .headers
            .get("host")
            .map(|h| h.to_str().unwrap().to_string())
            .unwrap_or_default(),
        _ => unreachable!(),
    };
    let mut r = Request {
        head: &head,
        client: peer.ip,
        peer: &peer,
        host: &host,
        edits: &mut edits,
        held: &mut Vec::new(),
        encode: &mut None,
    };
    let answer = c
        .request(&mut r)
        .map(|a| (a.response.status().as_u16(), a.response.headers().clone()));
    Outcome {
        answer,
        path: edits.path.clone(),
        set: edits
            .set
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect(),
    }
}

fn get(uri: &str) -> http::Request<()> {
    http::Request::get(uri)
        .header("host", "shop.example")
        .body(())
        .unwrap()
}

const PEER: &str = "203.0.113.5:4000";

#[test]
fn paths_are_rewritten_as_traefik_does() {
    let strip = route(
        "\"s\"",
        "[middlewares.s.strip_prefix]\nprefixes = [\"/shop\", \"/store/\"]",
    );
    let o = run(&strip, get("/shop/cart?id=1"), false, PEER);
    assert_eq!(o.path.as_deref(), Some("/cart"));
    assert_eq!(
        o.set,
        [("x-forwarded-prefix".to_string(), "/shop".to_string())]
    );
    assert_eq!(
        run(&strip, get("/shop"), false, PEER).path.as_deref(),
        Some("/")
    );
    assert_eq!(
        run(&strip, get("/store/a"), false, PEER).path.as_deref(),
        Some("/a")
    );
    assert_eq!(run(&strip, get("/other"), false, PEER).path, None);

    let regex = route(
        "\"s\"",
        "[middlewares.s.strip_prefix_regex]\nregex = [\"/api/v[0-9]+\"]",
    );
    let o = run(&regex, get("/api/v2/users"), false, PEER);
    assert_eq!(o.path.as_deref(), Some("/users"));
    assert_eq!(o.set[0].1, "/api/v2");

    let add = route("\"a\"", "[middlewares.a.add_prefix]\nprefix = \"/shop\"");
    assert_eq!(
        run(&add, get("/cart"), false, PEER).path.as_deref(),
        Some("/shop/cart")
    );

    let replace = route("\"p\"", "[middlewares.p.replace_path]\npath = \"/health\"");
    let o = run(&replace, get("/anything"), false, PEER);
    assert_eq!(o.path.as_deref(), Some("/health"));
    assert_eq!(
        o.set,
        [("x-replaced-path".to_string(), "/anything".to_string())]
    );

    let re = route(
        "\"p\"",
        "[middlewares.p.replace_path_regex]\nregex = \"^/old/(.*)\"\nreplacement = \"/new/$1\"",
    );
    assert_eq!(
        run(&re, get("/old/a/b"), false, PEER).path.as_deref(),
        Some("/new/a/b")
    );
    assert_eq!(run(&re, get("/keep"), false, PEER).path, None);

    // Chained: each sees the path the one before left.
    let both = route(
        "\"s\", \"a\"",
        "[middlewares.s.strip_prefix]\nprefixes = [\"/shop\"]\n[middlewares.a.add_prefix]\nprefix = \"/v1\"",
    );
    assert_eq!(
        run(&both, get("/shop/cart"), false, PEER).path.as_deref(),
        Some("/v1/cart")
    );
}

#[test]
fn a_rewritten_path_never_climbs_above_the_root() {
    let re = route(
        "\"p\"",
        "[middlewares.p.replace_path_regex]\nregex = \"^/x/(.*)\"\nreplacement = \"/$1\"",
    );
    // `/x/%2e%2e/etc` is routed as is (the escape is data), and the rewrite's result is
    // normalised again: `..` cannot climb above `/`.
    let o = run(&re, get("/x/%2e%2e/%2e%2e/etc"), false, PEER);
    assert_eq!(o.answer.map(|a| a.0), Some(400));
    let o = run(&re, get("/x/a/../b"), false, PEER);
    assert_eq!(o.path.as_deref(), Some("/b"));
}

#[test]
fn a_trusted_proxys_prefix_is_extended_and_anyone_elses_replaced() {
    let strip = route(
        "\"s\"",
        "[middlewares.s.strip_prefix]\nprefixes = [\"/shop\"]",
    );
    let req = || {
        http::Request::get("/shop/a")
            .header("host", "x")
            .header("x-forwarded-prefix", "/outer")
            .body(())
            .unwrap()
    };
    assert_eq!(
        run(&strip, req(), false, "10.1.2.3:1").set[0].1,
        "/outer/shop"
    );
    assert_eq!(run(&strip, req(), false, PEER).set[0].1, "/shop");
}

#[test]
fn basic_auth_answers_401_unless_one_field_holds_a_users_password() {
    let auth = route(
        "\"a\"",
        "[middlewares.a.basic_auth]\nrealm = \"shop\"\nusers = [\"admin:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\"]",
    );
    let with = |values: &[&str]| {
        let mut b = http::Request::get("/").header("host", "x");
        for v in values {
            b = b.header("authorization", *v);
        }
        run(&auth, b.body(()).unwrap(), false, PEER).answer
    };
    use base64::Engine as _;
    let basic = |s: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };
    assert!(with(&[&basic("admin:secret")]).is_none());
    let (status, headers) = with(&[]).unwrap();
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Basic realm=\"shop\"");
    assert_eq!(with(&[&basic("admin:wrong")]).unwrap().0, 401);
    assert_eq!(with(&[&basic("nobody:secret")]).unwrap().0, 401);
    assert_eq!(with(&["Bearer abc"]).unwrap().0, 401);
    assert_eq!(with(&["Basic !!!"]).unwrap().0, 401);
    assert_eq!(
        with(&[&basic("admin:secret"), &basic("admin:secret")])
            .unwrap()
            .0,
        401,
        "two Authorization fields"
    );
    // The field never goes on (remove_header's default).
    let edits = auth.request_edits().unwrap();
    assert!(edits.drops(b"authorization", false));
}

#[test]
fn ip_allow_and_methods_answer_403_and_405() {
    let allow = route(
        "\"i\"",
        "[middlewares.i.ip_allow]\nranges = [\"203.0.113.0/24\", \"::1\"]",
    );
    assert!(run(&allow, get("/"), false, PEER).answer.is_none());
    assert_eq!(
        run(&allow, get("/"), false, "198.51.100.1:1")
            .answer
            .unwrap()
            .0,
        403
    );
    assert!(run(&allow, get("/"), false, "[::1]:1").answer.is_none());

    let methods = route(
        "\"m\"",
        "[middlewares.m.methods]\nallow = [\"get\", \"HEAD\"]",
    );
    assert!(run(&methods, get("/"), false, PEER).answer.is_none());
    let post = http::Request::post("/")
        .header("host", "x")
        .body(())
        .unwrap();
    let (status, headers) = run(&methods, post, false, PEER).answer.unwrap();
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET, HEAD");
}

#[test]
fn ip_allow_at_a_depth_reads_a_trusted_proxys_forwarded_field_only() {
    // The client two proxies away: the second entry from the right.
    let allow = route(
        "\"i\"",
        "[middlewares.i.ip_allow]\nranges = [\"198.51.100.0/24\"]\ndepth = 2\nreject_status = 404",
    );
    let via = |xff: &str| {
        http::Request::get("/")
            .header("host", "shop.example")
            .header("x-forwarded-for", xff)
            .body(())
            .unwrap()
    };
    let status = |req, peer| run(&allow, req, false, peer).answer.map(|a| a.0);
    // From a trusted proxy (10.0.0.0/8 in `run`): the entry at depth 2 decides.
    assert_eq!(status(via("198.51.100.7, 203.0.113.9"), "10.0.0.5:1"), None);
    assert_eq!(
        status(via("192.0.2.1, 198.51.100.7"), "10.0.0.5:1"),
        Some(404),
        "depth 1 would have passed"
    );
    // Entries in two fields count as one list.
    let two = http::Request::get("/")
        .header("host", "shop.example")
        .header("x-forwarded-for", "198.51.100.7")
        .header("x-forwarded-for", "203.0.113.9")
        .body(())
        .unwrap();
    assert_eq!(status(two, "10.0.0.5:1"), None);
    // Too few entries, or one that is not an address: nobody can be told, so refused.
    assert_eq!(status(via("198.51.100.7"), "10.0.0.5:1"), Some(404));
    assert_eq!(status(via("unknown, 203.0.113.9"), "10.0.0.5:1"), Some(404));
    // A peer that is not a trusted proxy is not believed: its own address decides.
    assert_eq!(
        status(via("198.51.100.7, 203.0.113.9"), "192.0.2.1:1"),
        Some(404)
    );
    assert_eq!(status(via("192.0.2.1, 192.0.2.2"), "198.51.100.3:1"), None);
}

#[test]
fn redirects_follow_traefiks_statuses() {
    let scheme = route(
        "\"s\"",
        "[middlewares.s.redirect_scheme]\nport = 8443\npermanent = true",
    );
    let (status, h) = run(&scheme, get("/a?b=1"), false, PEER).answer.unwrap();
    assert_eq!(
        (status, h["location"].to_str().unwrap()),
        (301, "https://shop.example:8443/a?b=1")
    );
    assert!(
        run(&scheme, get("/a"), true, PEER).answer.is_none(),
        "already https"
    );
    let post = http::Request::post("/a")
        .header("host", "shop.example")
        .body(())
        .unwrap();
    assert_eq!(run(&scheme, post, false, PEER).answer.unwrap().0, 308);

    let re = route(
        "\"r\"",
        "[middlewares.r.redirect_regex]\nregex = \"^http://shop\\\\.example/(.*)\"\nreplacement = \"https://www.example/$1\"",
    );
    let (status, h) = run(&re, get("/x?y"), false, PEER).answer.unwrap();
    assert_eq!(
        (status, h["location"].to_str().unwrap()),
        (302, "https://www.example/x?y")
    );
}

#[test]
fn redirect_https_runs_first_and_hsts_is_the_last_response_edit() {
    let c = chain(
        "[routes.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"app\"\nentrypoints = [\"web\"]\nmiddlewares = [\"h\", \"a\"]\nredirect_https = true\nhsts = true\n\
         [middlewares.a.basic_auth]\nusers = [\"u:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\"]\n\
         [middlewares.h.headers]\nresponse.set = { \"Strict-Transport-Security\" = \"max-age=1\", \"X-Frame-Options\" = \"SAMEORIGIN\" }",
    );
    assert_eq!(&*c.names[0], "redirect_https");
    assert_eq!(&*c.names[3], "hsts");
    // Over plain HTTP: redirected before auth is asked.
    let (status, h) = run(&c, get("/p"), false, PEER).answer.unwrap();
    assert_eq!(
        (status, h["location"].to_str().unwrap()),
        (308, "https://shop.example:8443/p")
    );
    // Over TLS: the 401 gets the edits of the middlewares before auth, and hsts.
    let mut answer: crate::answer::Answer =
        crate::answer::error(http::StatusCode::UNAUTHORIZED, "x").into();
    let mut edits = RequestEdits::default();
    let trusted = [];
    let peer = Peer::on(PEER.parse().unwrap(), &trusted, true);
    let head = RequestHead::Parts(Box::new(get("/").into_parts().0));
    let mut r = Request {
        head: &head,
        client: peer.ip,
        peer: &peer,
        host: "shop.example",
        edits: &mut edits,
        held: &mut Vec::new(),
        encode: &mut None,
    };
    let a = c.request(&mut r).unwrap();
    assert_eq!(&*a.by, "a@file");
    a.edits.unwrap().apply_to_answer(&mut answer, true);
    let h = &answer.parts.headers;
    assert_eq!(h["x-frame-options"], "SAMEORIGIN");
    assert_eq!(
        h["strict-transport-security"], "max-age=31536000",
        "hsts wins over a header rule"
    );
}
