//! Debian's Chromium, headless, driven through chromedriver (WebDriver) with fantoccini.
//! The flags are those this machine needs: no sandbox as root, no background networking
//! (the closed network refuses it), autoplay allowed for the player.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Browser {
    pub client: fantoccini::Client,
    driver: Child,
    profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    pub async fn start() -> Browser {
        Self::start_with_args(&[]).await
    }

    /// With more command-line flags (fake camera and microphone for the browser agent).
    pub async fn start_with_args(extra: &[String]) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) must be installed: scripts/test installs it");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1300",
            "--autoplay-policy=no-user-gesture-required",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend(extra.iter().cloned());
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a Chromium session");
        Browser {
            client,
            driver,
            profile,
        }
    }

    /// The browser's profile: everything it writes to disk is under it.
    pub fn profile_dir(&self) -> &Path {
        self.profile.path()
    }

    /// Runs a script and returns its value.
    pub async fn js(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` returns true.
    pub async fn until(&self, what: &str, timeout: Duration, script: &str) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.js(script).await == serde_json::Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let state = self.js("return window.__player ? window.__player() : document.body.innerText.slice(0, 400)").await;
                panic!("timed out waiting for {what}; page state: {state}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends keys to the focused element (the page's keyboard handlers see them).
    pub async fn keys(&self, keys: &str) {
        let el = self.client.active_element().await.unwrap();
        el.send_keys(keys).await.unwrap();
    }

    pub async fn screenshot(&self, path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, self.client.screenshot().await.unwrap()).unwrap();
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Logs in on the staff listener at `staff` and, at the forced first change, replaces
    /// `password` with `new_password`; ends on the account's home page.
    pub async fn first_login(&self, staff: &str, login: &str, password: &str, new_password: &str) {
        use fantoccini::Locator;
        let c = &self.client;
        c.goto(&format!("{staff}/")).await.unwrap();
        c.find(Locator::Id("login"))
            .await
            .unwrap()
            .send_keys(login)
            .await
            .unwrap();
        c.find(Locator::Id("password"))
            .await
            .unwrap()
            .send_keys(password)
            .await
            .unwrap();
        c.find(Locator::Css("form button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.until(
            "the password page",
            Duration::from_secs(10),
            "return location.pathname === '/account/password'",
        )
        .await;
        self.change_password(password, new_password).await;
        self.until("the home page", Duration::from_secs(10), "return location.pathname !== '/account/password' && document.readyState === 'complete'").await;
    }

    /// Fills and sends the password change form.
    pub async fn change_password(&self, current: &str, new: &str) {
        use fantoccini::Locator;
        for (id, value) in [("current", current), ("new", new), ("confirm", new)] {
            let field = self.client.find(Locator::Id(id)).await.unwrap();
            field.clear().await.unwrap();
            field.send_keys(value).await.unwrap();
        }
        self.client
            .find(Locator::Css(
                "form[action='/account/password'] button[type=submit]",
            ))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
}

/// axe-core's WCAG 2.0/2.1 level A and AA rules, run in the page as it is now.
pub async fn accessible(b: &Browser, step: &str) {
    let axe = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/axe-core/axe.min.js"),
    )
    .expect("axe-core is installed by scripts/install-deps (npm ci in tests/)");
    let script = format!(
        "{axe}\nconst done = arguments[arguments.length - 1];\n\
         axe.run(document, {{ runOnly: {{ type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] }} }})\
         .then(r => done(r.violations.map(v => ({{ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.html).slice(0, 3) }}))))\
         .catch(e => done([{{ id: 'axe-error', help: String(e) }}]));"
    );
    let violations = b.client.execute_async(&script, vec![]).await.unwrap();
    assert_eq!(
        violations,
        serde_json::json!([]),
        "accessibility violations at {step}"
    );
}

/// Waits until the element is shown.
pub async fn visible(b: &Browser, what: &str, id: &str) {
    b.until(what, Duration::from_secs(30), &format!("const e = document.getElementById('{id}'); return !!e && !e.hidden && e.offsetParent !== null")).await;
}

pub async fn click(b: &Browser, id: &str) {
    b.client
        .find(fantoccini::Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Where the run leaves its screenshots (the README names it).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("screenshots")
}

/// A PulseAudio daemon of the test's own with a null sink: headless Firefox runs Web Audio
/// (which reads its microphone where there is no `MediaStreamTrackProcessor`) only with an
/// audio output, and this machine has none.
pub struct Sound {
    child: Child,
    pub runtime: tempfile::TempDir,
}

impl Sound {
    pub fn start() -> Sound {
        let runtime = tempfile::tempdir().unwrap();
        let child = Command::new("pulseaudio")
            .args([
                "--daemonize=no",
                "-n",
                "--exit-idle-time=-1",
                "--load=module-null-sink sink_name=null",
                "--load=module-native-protocol-unix",
            ])
            .env("XDG_RUNTIME_DIR", runtime.path())
            .env("HOME", runtime.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "pulseaudio (Debian package) must be installed: scripts/install-deps installs it",
            );
        let socket = runtime.path().join("pulse/native");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "pulseaudio did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sound { child, runtime }
    }
}

impl Drop for Sound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Firefox ESR through WebDriver BiDi (`tests/firefox/drive.mjs`, puppeteer-core) on the
/// browser agent's page: what the page showed, as JSON.
pub fn firefox(args: &[&str], sound: &Sound) -> serde_json::Value {
    Firefox::start(args, sound).finish()
}

/// A Firefox driver run that stops at its events (`{"event": …}`) until told to go on.
pub struct Firefox {
    child: Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    profile: tempfile::TempDir,
}

impl Firefox {
    pub fn start(args: &[&str], sound: &Sound) -> Firefox {
        Self::start_in(None, args, sound)
    }

    /// Firefox in `net`'s namespace when given (the fault suite: Firefox gathers ICE
    /// candidates only on the interface of its default route, never on loopback).
    pub fn start_in(net: Option<&super::netns::Netns>, args: &[&str], sound: &Sound) -> Firefox {
        use std::io::BufRead;
        let node = Path::new("node");
        let mut cmd = net.map_or_else(|| Command::new(node), |n| n.command(node));
        let profile = tempfile::tempdir().unwrap();
        let mut child = cmd
            .arg("firefox/drive.mjs")
            .args(args)
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
            .env("XDG_RUNTIME_DIR", sound.runtime.path())
            .env("FIREFOX_PROFILE", profile.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs the Firefox driver");
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Firefox {
            child,
            lines,
            profile,
        }
    }

    /// The browser's whole profile (OPFS, IndexedDB, caches), on disk while it runs.
    pub fn profile(&self) -> &Path {
        self.profile.path()
    }

    /// Waits for the driver's next event and returns its name.
    pub fn event(&mut self) -> String {
        let line = self.lines.next().expect("the driver's next line").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        v["event"]
            .as_str()
            .unwrap_or_else(|| panic!("not an event: {line}"))
            .to_owned()
    }

    pub fn go_on(&mut self) {
        use std::io::Write;
        writeln!(self.child.stdin.as_mut().unwrap(), "go").unwrap();
    }

    /// The driver's last line: what the page showed.
    pub fn finish(mut self) -> serde_json::Value {
        let mut last = String::new();
        for line in self.lines.by_ref() {
            last = line.unwrap();
        }
        let _ = self.child.wait();
        serde_json::from_str(&last)
            .unwrap_or_else(|e| panic!("the Firefox driver said {last:?} ({e})"))
    }
}
