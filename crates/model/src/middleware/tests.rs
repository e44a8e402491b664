use crate::file_config::{self, parse};
use crate::middleware::{Middleware, UsersFile};

const HEAD: &str = r#"
entrypoints.web = "127.0.0.1:80"
[services.app]
servers = [{ url = "http://10.0.0.1:80" }]
"#;

fn errors(body: &str) -> String {
    parse(&format!("{HEAD}{body}")).unwrap_err().to_string()
}

#[test]
fn middlewares_are_declared_by_name_and_routes_name_them_in_order() {
    let cfg = parse(&format!(
        r#"{HEAD}
[routes.shop]
rule = "PathPrefix(`/shop`)"
service = "app"
middlewares = ["auth", "strip", "sec@file"]

[middlewares.auth.basic_auth]
users = ["admin:$2y$05$.l2R/UrCpkRh8Ak.893ZOuCEG1fu.0yRCVIuuyLlj9R0KK5J8iZEm"]
realm = "shop"

[middlewares.strip.strip_prefix]
prefixes = ["/shop"]

[middlewares.sec.headers]
frame_deny = true
request.set = {{ "X-Env" = "prod" }}
response.remove = ["Server"]
"#
    ))
    .unwrap();
    assert_eq!(
        cfg.routes[0].middlewares,
        ["auth@file", "strip@file", "sec@file"]
    );
    let names: Vec<&str> = cfg.middlewares.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["auth@file", "sec@file", "strip@file"]);
    match &cfg.middlewares[0].kind {
        Middleware::BasicAuth(b) => {
            assert_eq!(b.realm, "shop");
            assert!(b.remove_header, "Authorization is removed by default");
            assert_eq!(b.users[0].name, "admin");
        }
        other => panic!("{other:?}"),
    }
    match &cfg.middlewares[1].kind {
        Middleware::Headers(h) => {
            assert_eq!(h.request.set, [("x-env".to_string(), "prod".to_string())]);
            assert_eq!(h.response.remove, ["server"]);
            assert!(h.security.frame_deny);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_refusal_names_its_field() {
    let cases: &[(&str, &str)] = &[
        (
            "[middlewares.a.basic_auth]\nusers = [\"admin:hunter2\"]",
            "middlewares.a.basic_auth.users[0]: user \"admin\": the password is in plain text",
        ),
        ("[middlewares.a.basic_auth]\nusers = []", "middlewares.a.basic_auth: no users"),
        ("[middlewares.a]\n", "middlewares.a: names no type"),
        (
            "[middlewares.a.add_prefix]\nprefix = \"/x\"\n[middlewares.a.replace_path]\npath = \"/y\"",
            "middlewares.a: declares more than one type",
        ),
        ("[middlewares.a.basic_auht]\n", "unknown field `basic_auht`"),
        (
            "[middlewares.a.replace_path_regex]\nregex = \"^/(a\"\nreplacement = \"/\"",
            "middlewares.a.replace_path_regex.regex: invalid regex \"^/(a\": column 3: unclosed group",
        ),
        (
            "[middlewares.a.headers]\nrequest.set = { \"X-Forwarded-For\" = \"1.2.3.4\" }",
            "\"X-Forwarded-For\" is a forwarding field Tether writes",
        ),
        (
            "[middlewares.a.headers]\nresponse.set = { \"Content-Length\" = \"1\" }",
            "the message's framing",
        ),
        (
            "[middlewares.a.headers]\nrequest.remove = [\"Connection\"]",
            "a hop-by-hop field",
        ),
        (
            "[middlewares.a.headers]\nresponse.set = { \"X-A\" = \"a\\r\\nSet-Cookie: x=1\" }",
            "middlewares.a.headers.response.set.X-A: holds CR, LF or NUL",
        ),
        ("[middlewares.a.ip_allow]\nranges = [\"10.0.0.0/33\"]", "middlewares.a.ip_allow.ranges[0]"),
        (
            "[middlewares.a.ip_allow]\nranges = [\"10.0.0.0/8\"]\nreject_status = 302",
            "middlewares.a.ip_allow.reject_status: 302: expected a 4xx or 5xx status",
        ),
        ("[middlewares.a.strip_prefix]\nprefixes = [\"shop\"]", "must start with '/'"),
        (
            "[routes.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"app\"\nmiddlewares = [\"ghost\"]",
            "routes.r.middlewares[0]: no middleware named \"ghost@file\" (route r)",
        ),
        (
            "[middlewares.a.chain]\nmiddlewares = [\"b\"]\n[middlewares.b.chain]\nmiddlewares = [\"a\"]",
            "a chain cannot contain itself",
        ),
        ("[middlewares.a.redirect_scheme]\nscheme = \"ftp\"", "middlewares.a.redirect_scheme.scheme"),
        (
            "[middlewares.a.strip_prefix_regex]\nregex = [\"(a{1000}){1000}\"]",
            "is too large once compiled",
        ),
        (
            "[middlewares.a.rate_limit]\naverage = 10\nby = \"header:X Key\"",
            "middlewares.a.rate_limit.by: \"X Key\" is not a valid header name",
        ),
        (
            "[middlewares.a.rate_limit]\naverage = 0",
            "middlewares.a.rate_limit.average: is 0 and no burst is given",
        ),
        (
            "[middlewares.a.rate_limit]\naverage = 10\nby = \"route\"",
            "middlewares.a.rate_limit.by: \"route\": expected \"client_ip\" or \"header:NAME\"",
        ),
        (
            "[middlewares.a.rate_limit]\naverage = 10\nperiod = \"soon\"",
            "middlewares.a.rate_limit.period",
        ),
        (
            "[middlewares.a.rate_limit]\naverage = 10\ntable_size = 1",
            "middlewares.a.rate_limit.table_size: must be between 16",
        ),
        (
            "[middlewares.a.rate_limit]\naverage = 10\ndepth = 1\nby = \"header:k\"",
            "middlewares.a.rate_limit.depth: applies to by = \"client_ip\" only",
        ),
        ("[middlewares.a.in_flight]\namount = 0", "middlewares.a.in_flight.amount: is 0"),
        (
            "[middlewares.a.compress]\nencodings = [\"deflate\"]",
            "middlewares.a.compress.encodings[0]: unknown encoding \"deflate\": Tether writes zstd, br, gzip",
        ),
        (
            "[middlewares.a.compress]\nlevel = { gzip = 12 }",
            "middlewares.a.compress.level.gzip: 12 is out of gzip's range 1..=9",
        ),
        (
            "[middlewares.a.compress]\nexclude_types = [\"html\"]",
            "middlewares.a.compress.exclude_types[0]: \"html\" is not a media type",
        ),
        (
            "[middlewares.a.compress]\nexclude_types = []\ninclude_types = [\"text/html\"]",
            "give include_types or exclude_types, not both",
        ),
        ("[middlewares.a.in_flight]\namount = 1\nby = \"host\"", "middlewares.a.in_flight.by"),
    ];
    for (body, want) in cases {
        let got = errors(body);
        assert!(got.contains(want), "{body}\n  wanted: {want}\n  got: {got}");
        assert!(
            !got.contains("hunter2"),
            "a password is never repeated: {got}"
        );
    }
}

#[test]
fn another_sources_middleware_is_left_to_the_merged_table() {
    let cfg = parse(&format!(
        "{HEAD}[routes.r]\nrule = \"PathPrefix(`/`)\"\nservice = \"app\"\nmiddlewares = [\"auth@docker\"]\n"
    ))
    .unwrap();
    assert_eq!(cfg.routes[0].middlewares, ["auth@docker"]);
}

#[test]
fn a_users_file_from_a_label_or_the_api_is_a_secret_name() {
    let src = "[middlewares.a.basic_auth]\nusers_file = \"/etc/shadow\"\n";
    let file = file_config::parse(src).unwrap();
    assert_eq!(
        file.middlewares[0].kind,
        Middleware::BasicAuth(crate::middleware::BasicAuth {
            users: Vec::new(),
            users_file: Some(UsersFile::Path("/etc/shadow".into())),
            realm: "tether".into(),
            remove_header: true,
        })
    );
    let untrusted = file_config::Source {
        provider: "api",
        origin: crate::middleware::Origin::Untrusted,
        services_here: false,
    };
    let err = file_config::parse_as(src, untrusted)
        .unwrap_err()
        .to_string();
    assert!(err.contains("names a Docker secret"), "{err}");
    let ok = file_config::parse_as(
        "[middlewares.a.basic_auth]\nusers_file = \"shop_users\"\n",
        untrusted,
    )
    .unwrap();
    assert_eq!(ok.middlewares[0].name, "a@api");
}

#[test]
fn traffic_limits_have_traefiks_defaults() {
    use crate::middleware::{InFlight, RateLimit, Source};
    let cfg = parse(&format!(
        r#"{HEAD}
[middlewares.r.rate_limit]
average = 100
[middlewares.k.rate_limit]
average = 1
period = "1m"
burst = 5
by = "header:X-Api-Key"
[middlewares.f.in_flight]
amount = 10
by = "route"
"#
    ))
    .unwrap();
    let kind = |n: &str| {
        cfg.middlewares
            .iter()
            .find(|m| m.name == n)
            .unwrap()
            .kind
            .clone()
    };
    assert_eq!(
        kind("r@file"),
        Middleware::RateLimit(RateLimit {
            average: 100,
            period_ms: 1000,
            burst: 1,
            by: Source::ClientIp { depth: 0 },
            table_size: 65_536,
        })
    );
    assert_eq!(
        kind("k@file"),
        Middleware::RateLimit(RateLimit {
            average: 1,
            period_ms: 60_000,
            burst: 5,
            by: Source::Header("x-api-key".into()),
            table_size: 65_536,
        })
    );
    assert_eq!(
        kind("f@file"),
        Middleware::InFlight(InFlight {
            amount: 10,
            by: Source::Route,
        })
    );
}
