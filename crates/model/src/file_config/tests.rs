//! Tests of the TOML dialect: a full file parses, and each kind of mistake names its line and field.

use super::*;
use crate::decl::{AffinityMode, BalanceAlgo, HashOn, HttpsRedirect, OnMissing};

const FULL: &str = r#"
[entrypoints]
web = "127.0.0.1:8080"

[timeouts]
connect = "2s"

[forwarded]
trusted_proxies = ["10.0.0.0/8"]

[routes.service1]
rule = "PathPrefix(`/service1`)"
service = "service1"

[services.service1]
servers = [
  { url = "http://127.0.0.1:9001", name = "s1-a" },
  { url = "http://127.0.0.1:9002", name = "s1-b", weight = 3 },
]
[services.service1.affinity]
mode = "prefix"
cookie = "connect.sid"
nocache = true

[services.api]
balance = "consistent_hash"
hash_on = "header:X-User"
servers = [{ url = "127.0.0.1:9003" }]
[services.api.affinity]
mode = "cookie"
on_missing = "fail"
max_age = "1h"
"#;

#[test]
fn a_full_file_parses() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.settings.entrypoints[0].0, "web");
    assert_eq!(c.settings.timeouts.connect, Duration::from_secs(2));
    assert_eq!(c.settings.timeouts.idle, Timeouts::default().idle);
    assert_eq!(c.routes[0].priority, "PathPrefix(`/service1`)".len() as i64);
    let s1 = c.services.iter().find(|s| s.name == "service1").unwrap();
    assert_eq!(s1.servers[1].weight, 3);
    let aff = s1.affinity.as_ref().unwrap();
    assert!(aff.nocache);
    assert_eq!(
        aff.mode,
        AffinityMode::Prefix {
            cookie: "connect.sid".into()
        }
    );
    let api = c.services.iter().find(|s| s.name == "api").unwrap();
    assert_eq!(
        api.balance,
        BalanceAlgo::ConsistentHash(HashOn::Header("x-user".into()))
    );
    assert_eq!(api.servers[0].name, "127.0.0.1:9003");
    let aff = api.affinity.as_ref().unwrap();
    assert_eq!(aff.on_missing, OnMissing::Fail);
    match &aff.mode {
        AffinityMode::Cookie(a) => {
            assert_eq!(a.name, "tether_api");
            assert_eq!(a.max_age, Some(Duration::from_secs(3600)));
        }
        other => panic!("{other:?}"),
    }
}

fn errors(src: &str) -> Vec<ConfigError> {
    parse(src).unwrap_err().0
}

#[test]
fn a_bad_rule_names_line_field_and_column() {
    let e = errors("[routes.web]\nrule = \"PathPrefx(`/`)\"\nservice = \"web\"\n[services.web]\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, Some(2));
    assert_eq!(e[0].field, "routes.web.rule");
    assert!(
        e[0].message.contains("unknown matcher \"PathPrefx\""),
        "{}",
        e[0].message
    );
}

#[test]
fn unknown_fields_and_syntax_errors_have_lines() {
    let e = errors("[services.web]\nserverz = []\n");
    assert_eq!(e[0].line, Some(2), "{e:?}");
    assert!(e[0].message.contains("serverz"), "{e:?}");
    let e = errors("[routes.web\n");
    assert_eq!(e[0].line, Some(1));
}

#[test]
fn every_bad_value_is_reported() {
    let src = r#"
[routes.web]
rule = "Path(`/`)"
service = "missing"
entrypoints = ["nope"]

[services.web]
balance = "random"
servers = [{ url = "http://a:99999" }, { url = "ftp://b" }, { url = "http://c", weight = -1 }]
[services.web.affinity]
mode = "cookie"
same_site = "None"
"#;
    let e = errors(src);
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    for want in [
        "routes.web.entrypoints",
        "routes.web.service",
        "services.web.balance",
        "services.web.servers[0].url",
        "services.web.servers[1].url",
        "services.web.servers[2].weight",
        "services.web.affinity.same_site",
    ] {
        assert!(fields.contains(&want), "missing {want} in {fields:?}");
    }
    assert!(e.iter().all(|e| e.line.is_some()), "{e:?}");
    let rendered = ConfigErrors(e).render("tether.toml");
    assert!(
        rendered.contains("tether.toml:9: services.web.servers[0].url"),
        "{rendered}"
    );
}

#[test]
fn short_keys_and_duplicate_server_names_are_refused() {
    let e = errors("[affinity]\nkey = \"short\"\n");
    assert_eq!(e[0].field, "affinity.key");
    let e = errors("[services.w]\nservers = [{ url = \"a:1\", name = \"x\" }, { url = \"a:2\", name = \"x\" }]\n");
    assert_eq!(e[0].field, "services.w.servers[1].name");
    assert_eq!(e[0].line, Some(1));
}

#[test]
fn cidrs_contain_addresses() {
    let c = Cidr::parse("10.0.0.0/8").unwrap();
    assert!(c.contains("10.1.2.3".parse().unwrap()));
    assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
    assert!(!c.contains("11.0.0.1".parse().unwrap()));
    assert!(Cidr::parse("10.0.0.0/33").is_err());
    assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
}

#[test]
fn an_unknown_key_on_an_entrypoint_is_refused_and_certificates_may_come_later() {
    // Certificates may all come through the admin API or labels.
    let cfg = parse("[entrypoints]\nweb = { address = \"0.0.0.0:443\", tls = true }\n").unwrap();
    assert!(cfg.settings.tls.certificates.is_empty());
    assert!(cfg.settings.tls.entrypoints.contains_key("web"));
    let e = errors("[entrypoints.web]\naddress = \"0.0.0.0:80\"\nadress = \"x\"\n");
    assert!(e[0].message.contains("unknown field `adress`"), "{e:?}");
    let e = errors("[entrypoints]\nweb = { address = \"0.0.0.0:443\", tls = { strict = true } }\n");
    assert!(e[0].message.contains("unknown field `strict`"), "{e:?}");
}

#[test]
fn tls_entrypoints_and_certificates_in_the_documented_shape() {
    let cfg = parse(
        r#"
[entrypoints]
web = "0.0.0.0:80"
websecure = { address = "0.0.0.0:443", tls = true }
strict = { address = "0.0.0.0:8443", tls = { strict_sni = true, min_version = "1.3", alpn = ["http/1.1"] } }
off = { address = "0.0.0.0:8080", tls = false }

[[tls.certificates]]
cert_file = "/run/secrets/app.crt"
key_file = "/run/secrets/app.key"

[[tls.certificates]]
cert_file = "/run/secrets/other.crt"
key_file = "/run/secrets/other.key"
default = true
"#,
    )
    .unwrap();
    let t = &cfg.settings.tls;
    assert_eq!(
        t.entrypoints.keys().collect::<Vec<_>>(),
        ["strict", "websecure"]
    );
    assert_eq!(t.entrypoints["websecure"], EntrypointTls::default());
    let s = &t.entrypoints["strict"];
    assert!(s.strict_sni);
    assert_eq!(s.min_version, TlsVersion::V1_3);
    assert_eq!(s.alpn, ["http/1.1"]);
    assert_eq!(t.certificates.len(), 2);
    assert_eq!(
        t.certificates[0].cert_file,
        PathBuf::from("/run/secrets/app.crt")
    );
    assert!(!t.certificates[0].default && t.certificates[1].default);

    let e = errors(
        "[entrypoints]\nweb = { address = \"0.0.0.0:443\", tls = { min_version = \"1.0\", alpn = [\"spdy\"] } }\n\
         [[tls.certificates]]\ncert_file = \"a\"\nkey_file = \"b\"\ndefault = true\n\
         [[tls.certificates]]\ncert_file = \"c\"\nkey_file = \"\"\ndefault = true\n",
    );
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    assert!(fields.contains(&"entrypoints.web.tls.min_version"), "{e:?}");
    assert!(fields.contains(&"entrypoints.web.tls.alpn"), "{e:?}");
    assert!(fields.contains(&"tls.certificates[1].key_file"), "{e:?}");
    assert!(fields.contains(&"tls.certificates[1].default"), "{e:?}");
}

#[test]
fn a_routes_https_policy_parses_and_each_bad_value_is_named() {
    let svc = "[services.s]\nservers = [{ name = \"a\", url = \"http://127.0.0.1:1\" }]\n";
    let cfg = parse(&format!(
        "[routes.a]\nrule = \"Host(`a`)\"\nservice = \"s\"\nredirect_https = true\nhsts = true\n\
         [routes.b]\nrule = \"Host(`b`)\"\nservice = \"s\"\nredirect_https = {{ port = 8443 }}\n\
         hsts = {{ max_age = \"400d\", include_subdomains = true, preload = true }}\n\
         [routes.c]\nrule = \"Host(`c`)\"\nservice = \"s\"\nredirect_https = false\nhsts = false\n{svc}"
    ))
    .unwrap();
    let by = |n: &str| cfg.routes.iter().find(|r| r.name == n).unwrap();
    assert_eq!(by("a").redirect_https, Some(HttpsRedirect::default()));
    assert_eq!(by("a").hsts.unwrap().value(), "max-age=31536000");
    assert_eq!(
        by("b").redirect_https,
        Some(HttpsRedirect {
            port: Some(8443),
            ..HttpsRedirect::default()
        })
    );
    assert_eq!(
        by("b").hsts.unwrap().value(),
        "max-age=34560000; includeSubDomains; preload"
    );
    assert_eq!((&by("c").redirect_https, by("c").hsts), (&None, None));

    let e = errors(&format!(
        "[routes.a]\nrule = \"Host(`a`)\"\nservice = \"s\"\nredirect_https = {{ port = 70000 }}\n\
         hsts = {{ max_age = \"1h\", preload = true }}\n\
         [routes.b]\nrule = \"Host(`b`)\"\nservice = \"s\"\nhsts = {{ max_age = \"soon\" }}\n{svc}"
    ));
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "routes.a.redirect_https.port",
            "routes.a.hsts.preload",
            "routes.b.hsts.max_age"
        ],
        "{e:?}"
    );
    assert!(e[1].message.contains("include_subdomains"), "{e:?}");
    let e = errors(&format!(
        "[routes.a]\nrule = \"Host(`a`)\"\nservice = \"s\"\nredirect_https = {{ scheme = \"https\" }}\n{svc}"
    ));
    assert!(e[0].message.contains("unknown field `scheme`"), "{e:?}");
}

#[test]
fn one_unknown_key_hides_no_other_error_and_gets_a_suggestion() {
    let src = r#"
[timeouts]
conect = "1s"

[routes.web]
rule = "Pth(`/`)"
service = "web"

[routes.api]
rule = "Path(`/api`)"
service = "api"

[services.web]
servers = []
balence = "round_robin"

[services.api]
servers = [{ url = "ftp://x" }]

[servcies.x]
"#;
    let e = errors(src);
    let got: Vec<String> = e
        .iter()
        .map(|e| format!("{:?} {}: {}", e.line, e.field, e.message))
        .collect();
    let has = |line: usize, field: &str, text: &str| {
        e.iter()
            .any(|e| e.line == Some(line) && e.field == field && e.message.contains(text))
    };
    assert!(has(3, "timeouts", "did you mean `connect`?"), "{got:#?}");
    assert!(has(6, "routes.web.rule", "unknown matcher"), "{got:#?}");
    assert!(
        has(15, "services.web", "did you mean `balance`?"),
        "{got:#?}"
    );
    assert!(has(18, "services.api.servers[0].url", "scheme"), "{got:#?}");
    assert!(has(20, "servcies", "did you mean `services`?"), "{got:#?}");
    // The route to the service left out for its unknown key is not blamed for it.
    assert!(
        !got.iter().any(|g| g.contains("no service named \"web\"")),
        "{got:#?}"
    );
}

#[test]
fn health_checks_parse_with_defaults_and_each_bad_value_is_named() {
    let c = parse(
        "[services.web]\nservers = []\n[services.web.health]\npath = \"/healthz\"\nfall = 5\n",
    )
    .unwrap();
    let h = c.services[0].health.clone().unwrap();
    assert_eq!((h.path.as_str(), h.rise, h.fall), ("/healthz", 2, 5));
    assert_eq!(h.interval, std::time::Duration::from_secs(5));
    let e = errors("[services.web.health]\npath = \"healthz\"\n");
    assert_eq!(e[0].field, "services.web.health.path", "{e:?}");
    let e = errors("[services.web.health]\npath = \"/h\"\nrise = 0\n");
    assert_eq!(e[0].field, "services.web.health.rise", "{e:?}");
    let e = errors("[services.web.health]\npath = \"/h\"\ninterval = \"1s\"\ntimeout = \"2s\"\n");
    assert_eq!(e[0].field, "services.web.health.timeout", "{e:?}");
    let e = errors("[services.web.health]\npath = \"/h\"\nintervall = \"1s\"\n");
    assert!(e[0].message.contains("did you mean `interval`?"), "{e:?}");
}

#[test]
fn the_swarm_table_turns_the_provider_on_and_checks_its_keys() {
    let cfg = parse("[entrypoints]\nweb = \"127.0.0.1:80\"\n[swarm]\n").unwrap();
    let s = cfg.settings.swarm.expect("an empty [swarm] turns it on");
    assert_eq!(s.poll, SWARM_POLL);
    assert_eq!(s.endpoint, None);
    let cfg = parse(
        "[swarm]\nendpoint = \"tcp://10.0.0.2:2375\"\npoll = \"1s\"\nnetwork = \"web\"\nconstraint = \"a=b\"\n",
    )
    .unwrap();
    let s = cfg.settings.swarm.unwrap();
    assert_eq!(s.endpoint.as_deref(), Some("tcp://10.0.0.2:2375"));
    assert_eq!(s.poll, Duration::from_secs(1));
    assert_eq!(s.constraint, Some(("a".into(), "b".into())));
    let e = errors("[swarm]\npoll = \"10ms\"\nendpoint = \"ssh://x\"\nconstraint = \"x\"\n");
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    assert!(fields.contains(&"swarm.poll"), "{e:?}");
    assert!(fields.contains(&"swarm.endpoint"), "{e:?}");
    assert!(fields.contains(&"swarm.constraint"), "{e:?}");
    let e = errors("[swarm]\nnetwrok = \"a\"\n");
    assert!(
        e.iter()
            .any(|e| e.message.contains("netwrok") && e.message.contains("did you mean `network`")),
        "an unknown key, with a suggestion: {e:?}"
    );
}

/// Every "did you mean" names a field of the schema: each key of every example, misspelt (its
/// last two letters swapped), is refused with a suggestion of exactly that key.
#[test]
fn every_suggestion_is_a_real_field() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let all: Vec<&str> = src.lines().collect();
        for (i, line) in src.lines().enumerate() {
            let Some((key, _)) = line.split_once(" = ") else {
                continue;
            };
            let key = key.trim();
            let in_table = all[..i].iter().rev().find(|l| l.starts_with('['));
            // Names the user chooses (entrypoints, routes, services) are no schema fields.
            if key.len() < 4
                || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                || in_table.is_some_and(|t| t.trim() == "[entrypoints]")
            {
                continue;
            }
            let mut typo: Vec<char> = key.chars().collect();
            let n = typo.len();
            typo.swap(n - 1, n - 2);
            let typo: String = typo.into_iter().collect();
            if typo == key {
                continue;
            }
            let mut lines: Vec<String> = src.lines().map(str::to_string).collect();
            lines[i] = line.replacen(key, &typo, 1);
            let Err(errs) = parse(&lines.join("\n")) else {
                panic!("{}:{}: {typo} was accepted", path.display(), i + 1);
            };
            let said = errs.to_string();
            for suggestion in said.split("did you mean `").skip(1) {
                let name = suggestion.split('`').next().unwrap();
                assert_eq!(
                    name,
                    key,
                    "{}:{}: {typo} got a suggestion that is not the field: {said}",
                    path.display(),
                    i + 1
                );
            }
            assert!(
                said.contains(&format!("did you mean `{key}`")),
                "{}:{}: {said}",
                path.display(),
                i + 1
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} keys checked");
}

#[test]
fn an_unknown_key_is_named_even_when_empty() {
    // Found by the `config` fuzz target: `""=0` gave an error naming no field.
    let e = errors("\"\"=0\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].field, "\"\"");
    assert!(e[0].message.contains("unknown table"), "{e:?}");
}

#[test]
fn workers_is_a_count_of_one_or_more_read_at_start() {
    let ok =
        parse("workers = 4\npin_workers = true\n[entrypoints]\nweb = \"127.0.0.1:80\"\n").unwrap();
    assert_eq!(ok.settings.workers, Some(4));
    assert!(ok.settings.pin_workers);
    let default = parse("[entrypoints]\nweb = \"127.0.0.1:80\"\n").unwrap();
    assert_eq!(default.settings.workers, None, "one per CPU");
    assert!(!default.settings.pin_workers);
    for bad in ["0", "-2", "100000"] {
        let e = errors(&format!("workers = {bad}\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, "workers");
        assert_eq!(e[0].line, Some(1));
        assert!(e[0].message.contains("expected 1 to 1024"), "{e:?}");
    }
    let e = errors("workers = \"four\"\n");
    assert_eq!(e[0].field, "workers", "{e:?}");
    let e = errors("wokers = 2\n");
    assert!(e[0].message.contains("workers"), "a suggestion: {e:?}");
}
