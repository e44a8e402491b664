//! The stats page in a real headless Chromium (Debian's `chromium`): while a known mix of
//! requests has flowed, the page shows the requests each server answered, a draining server as
//! draining, the requests each route matched (two routes to one service counted apart), affinity
//! outcomes, and a rejected input with its field. A screenshot is saved under
//! `target/` (`docs/stats-page.png` is one taken this way).

use std::path::PathBuf;
use std::time::Duration;

use tether::app::{self, AdminOptions};
use tether_testkit::{wait_until, Backend, Client, TempDir};

use crate::support::{KEY, WEB};

fn config(a: &Backend, b: &Backend) -> String {
    format!(
        "{WEB}{KEY}[routes.api]\nrule = \"PathPrefix(`/api`)\"\nservice = \"api\"\n\
         [routes.shop]\nrule = \"PathPrefix(`/shop`)\"\nservice = \"shop\"\n\
         [routes.legacy]\nrule = \"PathPrefix(`/legacy`)\"\nservice = \"shop\"\n\
         [services.api]\nservers = [{{ name = \"api-1\", url = \"{a}\", weight = 3 }}, {{ name = \"api-2\", url = \"{b}\" }}]\n\
         [services.shop]\nservers = [{{ name = \"shop-1\", url = \"{a}\" }}, {{ name = \"shop-2\", url = \"{b}\", draining = true }}]\n\
         [services.shop.affinity]\nmode = \"cookie\"\ncookie = \"tid\"\n",
        a = a.url(),
        b = b.url()
    )
}

/// Debian's Chromium, or `None` after a loud message (a failure under `CI=true`).
fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        let msg = "chromium not found (apt-get install chromium): the stats page test needs it";
        tether_testkit::missing(msg);
    }
    found
}

/// Chromium's headless run over `url` with `args` (`--dump-dom`, `--screenshot=...`).
async fn headless(browser: &str, url: &str, args: &[&str]) -> String {
    let profile = TempDir::new("tether-chromium");
    let out = tokio::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            "--virtual-time-budget=2500",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("chromium finished within 60 s")
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the cell with `class` in the row of server `name`.
fn cell(dom: &str, name: &str, class: &str) -> String {
    cell_of(dom, "data-server", name, class)
}

/// The text of the cell with `class` in the row whose attribute `attr` is `name`.
fn cell_of(dom: &str, attr: &str, name: &str, class: &str) -> String {
    let row_at = dom
        .find(&format!("{attr}=\"{name}\""))
        .unwrap_or_else(|| panic!("no row for {name} in the page"));
    let row = &dom[row_at
        ..dom[row_at..]
            .find("</tr>")
            .map_or(dom.len(), |e| row_at + e)];
    let at = row
        .find(&format!("class=\"{class}\""))
        .unwrap_or_else(|| panic!("no {class} cell for {name}: {row}"));
    let start = at + row[at..].find('>').unwrap() + 1;
    row[start..start + row[start..].find('<').unwrap()].to_string()
}

#[tokio::test]
async fn the_stats_page_shows_what_was_sent_in_a_real_browser() {
    let Some(browser) = chromium() else {
        return;
    };
    let (a, b) = (Backend::spawn("a").await, Backend::spawn("b").await);
    let dir = TempDir::new("tether-stats-page");
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, config(&a, &b)).unwrap();
    let mut opts = app::Options::file(
        path.clone(),
        dir.path().to_path_buf(),
        Duration::from_secs(1),
    );
    opts.admin = AdminOptions {
        address: Some("127.0.0.1:0".parse().unwrap()),
        token: None,
        dfp: None,
    };
    let i = app::start(opts).await.expect("start");
    let web = i.addr("web");

    // 8 to /api (weights 3:1: 6 and 2); one visitor 5 times to /shop (1 new, then 4 pinned, all
    // to shop-1: shop-2 is draining); one forged cookie; 3 without a cookie to /legacy, another
    // route to the same service (3 new, to shop-1).
    for _ in 0..3 {
        Client::without_cookies(web).get("/legacy").await.unwrap();
    }
    for _ in 0..8 {
        assert_eq!(
            Client::without_cookies(web)
                .get("/api")
                .await
                .unwrap()
                .status,
            200
        );
    }
    let mut visitor = Client::new(web);
    for _ in 0..5 {
        visitor.get("/shop").await.unwrap();
    }
    let mut forger = Client::without_cookies(web);
    forger
        .jar
        .insert("tid".into(), "not-a-tether-cookie".into());
    forger.get("/shop").await.unwrap();
    // A bad edit of the file: refused, the field named, the last good table still served.
    let before = i.control.rejections().len();
    std::fs::write(
        &path,
        config(&a, &b).replace("PathPrefix(`/api`)", "PathPrefx(`/api`)"),
    )
    .unwrap();
    wait_until(Duration::from_secs(5), || async {
        i.control.rejections().len() > before
    })
    .await;

    let url = format!("http://{}/", i.admin.unwrap());
    let dom = headless(browser, &url, &["--dump-dom"]).await;
    assert_eq!(cell(&dom, "api-1", "requests"), "6", "api-1 answered 6");
    assert_eq!(cell(&dom, "api-2", "requests"), "2", "api-2 answered 2");
    assert_eq!(cell(&dom, "shop-1", "requests"), "9");
    assert_eq!(cell_of(&dom, "data-route", "api", "requests"), "8");
    assert_eq!(
        cell_of(&dom, "data-route", "shop", "requests"),
        "6",
        "the route counts its own requests, not its service's"
    );
    assert_eq!(cell_of(&dom, "data-route", "legacy", "requests"), "3");
    assert_eq!(cell(&dom, "shop-2", "requests"), "0");
    assert!(
        cell(&dom, "shop-2", "l draining").starts_with("draining"),
        "shop-2 is shown draining"
    );
    assert!(
        dom.contains("sticky (cookie tid): 4 hits, 4 new, 0 rebalanced, <span class=\"forged\">1 forged</span>"),
        "affinity outcomes"
    );
    assert!(
        dom.contains("<td class=\"field\">routes.api.rule</td>"),
        "the rejected input is shown with its field"
    );
    assert!(
        dom.contains(&i.control.status().version),
        "the applied version"
    );

    // The page was also rendered to a picture (kept under target/ for a look).
    let shot = target_dir().join("stats-page.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        browser,
        &url,
        &[
            "--window-size=1280,720",
            &format!("--screenshot={}", shot.display()),
        ],
    )
    .await;
    let png = std::fs::read(&shot).expect("a screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real picture"
    );
    i.shutdown().await;
}

/// `target/` of this workspace (or `CARGO_TARGET_DIR`).
fn target_dir() -> PathBuf {
    let t = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    std::fs::create_dir_all(&t).unwrap();
    t
}
