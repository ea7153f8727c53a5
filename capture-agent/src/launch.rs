//! The exam platform's launch link, as the operating system hands it to
//! `capture-agent launch LINK` (the `cloeconnect:` scheme is registered by the package's
//! `.desktop` file):
//!
//! - `cloeconnect://launch?server=https%3A%2F%2Fproctor.example.fr&token=clt_…`
//! - `https://proctor.example.fr/launch#clt_…` (the server is the link's origin; the token
//!   rides in the fragment, which browsers never send to any server);
//! - or a short code the candidate types, `K7F4-3QX9` (`protocol::launch_code`), traded
//!   once for the token at the server named by `--server` or listed first below.
//!
//! Any web page can open such a link, so the server it names must be one this computer
//! knows: one listed in `/etc/cloe-connect/servers` (the package's, one origin per line) or
//! `CLOE_ALLOWED_SERVERS` (comma-separated), named by its origin alone (no path: a path
//! after a listed origin could reach another service on it). A loopback server (the demo)
//! only in a development build or with `CLOE_ALLOW_LOOPBACK=1`: any local program could
//! listen there. Otherwise a phishing link would have the agent send the webcam to anyone.

use crate::client::check_server_url;
use anyhow::{bail, Context};
use url::Url;

#[derive(Debug, PartialEq, Eq)]
pub struct Launch {
    pub server: Url,
    pub token: String,
}

pub fn parse(link: &str) -> anyhow::Result<Launch> {
    let link = link.trim();
    anyhow::ensure!(link.len() <= 4096, "the launch link is too long");
    let url = Url::parse(link).context("the launch link is not a link")?;
    let (server, token) = match url.scheme() {
        "cloeconnect" => {
            let query = |name: &str| {
                url.query_pairs()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            };
            let server = query("server").context("the launch link names no server")?;
            (
                origin_only(check_server_url(&server)?)?,
                query("token").context("the launch link carries no token")?,
            )
        }
        "https" | "http" => {
            let token = url
                .fragment()
                .filter(|f| !f.is_empty())
                .context("the launch link carries no token")?
                .to_owned();
            let origin = url.origin().ascii_serialization();
            (check_server_url(&format!("{origin}/"))?, token)
        }
        other => bail!("unknown launch link scheme {other:?}"),
    };
    protocol::LaunchToken::parse(&token)
        .map_err(|e| anyhow::anyhow!("{} ({e})", crate::messages::current().token_malformed))?;
    if !allowed(&server, &listed_servers(), loopback_allowed()) {
        bail!(
            "{} ({})",
            crate::messages::current().unknown_server,
            server.origin().ascii_serialization()
        );
    }
    Ok(Launch { server, token })
}

/// A short code instead of a link: traded at `server` (or the first listed server) for
/// the launch token.
pub async fn redeem(
    code: &str,
    server: Option<&str>,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<Launch> {
    let m = crate::messages::current();
    let server = match server {
        Some(s) => check_server_url(s)?,
        None => {
            let first = listed_servers()
                .into_iter()
                .next()
                .context(m.code_needs_server)?;
            check_server_url(&first)?
        }
    };
    let api = crate::client::Api::new(server.clone(), String::new(), ca_file)?;
    match api.redeem_code(code).await {
        Ok(r) => Ok(Launch {
            server,
            token: r.launch_token,
        }),
        Err(f) if f.status == 404 => bail!("{} ({f})", m.code_unknown),
        Err(f) if f.status == 429 => bail!("{} ({f})", m.code_locked),
        Err(f) => bail!("{} ({f})", m.server_unreachable),
    }
}

/// Whether what the candidate gave looks like a short code rather than a link.
pub fn is_code(s: &str) -> bool {
    protocol::launch_code::normalise(s).is_some()
}

const SERVERS_FILE: &str = "/etc/cloe-connect/servers";

/// The servers this computer knows, from the package's file and the environment.
fn listed_servers() -> Vec<String> {
    let file = std::fs::read_to_string(SERVERS_FILE).unwrap_or_default();
    let env = std::env::var("CLOE_ALLOWED_SERVERS").unwrap_or_default();
    file.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
        .chain(env.split(',').map(|s| s.trim().to_owned()))
        .filter(|s| !s.is_empty())
        .collect()
}

/// A server named by its origin alone: a path, a query or credentials are refused.
fn origin_only(server: Url) -> anyhow::Result<Url> {
    if !matches!(server.path(), "" | "/")
        || server.query().is_some()
        || server.fragment().is_some()
        || !server.username().is_empty()
        || server.password().is_some()
    {
        bail!(
            "the launch link's server must be an origin alone ({}), not {server}",
            server.origin().ascii_serialization()
        );
    }
    Ok(server)
}

/// Loopback servers: in a development build, or when asked for explicitly.
fn loopback_allowed() -> bool {
    cfg!(debug_assertions) || std::env::var("CLOE_ALLOW_LOOPBACK").is_ok_and(|v| v == "1")
}

/// A listed origin (scheme, host, port), or a loopback server when those are allowed.
fn allowed(server: &Url, listed: &[String], loopback: bool) -> bool {
    (loopback && crate::client::is_loopback(server))
        || listed
            .iter()
            .filter_map(|l| Url::parse(l).ok())
            .any(|l| l.origin() == server.origin())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> String {
        let attempt = uuid::Uuid::new_v4();
        let public = protocol::AttemptKey::generate().recipient(&attempt).1;
        protocol::LaunchToken::new(&[7; 32], attempt, public).expose()
    }

    #[test]
    fn both_forms_of_the_link() {
        let t = token();
        // Loopback servers need no listing (the demo); the https form names its origin.
        let scheme = format!("cloeconnect://launch?server=http%3A%2F%2F127.0.0.1%3A8443&token={t}");
        assert_eq!(
            parse(&scheme).unwrap(),
            Launch {
                server: Url::parse("http://127.0.0.1:8443").unwrap(),
                token: t.clone()
            }
        );
        let web = format!("http://localhost:8443/launch#{t}");
        assert_eq!(
            parse(&web).unwrap(),
            Launch {
                server: Url::parse("http://localhost:8443/").unwrap(),
                token: t.clone()
            }
        );
    }

    #[test]
    fn only_listed_servers_get_the_recording() {
        let listed = vec!["https://proctor.example.fr:8443".to_owned()];
        assert!(allowed(
            &Url::parse("https://proctor.example.fr:8443/").unwrap(),
            &listed,
            false
        ));
        assert!(
            !allowed(
                &Url::parse("https://proctor.example.fr/").unwrap(),
                &listed,
                false
            ),
            "another port is another server"
        );
        assert!(!allowed(
            &Url::parse("https://evil.example/").unwrap(),
            &listed,
            false
        ));
        // Loopback (any local program may listen there): only when allowed.
        for local in [
            "http://127.0.0.1:9/",
            "http://127.8.9.10/",
            "http://localhost:8443/",
        ] {
            let local = Url::parse(local).unwrap();
            assert!(!allowed(&local, &[], false), "{local}");
            assert!(allowed(&local, &[], true), "{local}");
        }
        // A path after a listed origin is refused, not kept.
        let t = token();
        for server in [
            "https%3A%2F%2Fproctor.example.fr%3A8443%2Fother%2Fservice",
            "https%3A%2F%2Fproctor.example.fr%3A8443%2F%3Fx%3D1",
            "https%3A%2F%2Fuser%40proctor.example.fr%3A8443",
        ] {
            let e = format!(
                "{:#}",
                parse(&format!("cloeconnect://launch?server={server}&token={t}")).unwrap_err()
            );
            assert!(e.contains("origin alone"), "{e}");
        }
        let t = token();
        let e = format!(
            "{:#}",
            parse(&format!("https://evil.example/launch#{t}")).unwrap_err()
        );
        assert!(
            e.contains("serveur d'examen inconnu") && e.contains("https://evil.example"),
            "{e}"
        );
    }

    #[test]
    fn bad_links_are_refused_with_a_reason() {
        let t = token();
        for (link, why) in [
            ("not a link".to_owned(), "not a link"),
            (format!("cloeconnect://launch?token={t}"), "no server"),
            (
                "cloeconnect://launch?server=https%3A%2F%2Fa.example".to_owned(),
                "no token",
            ),
            ("https://proctor.example.fr/launch".to_owned(), "no token"),
            (
                format!("cloeconnect://launch?server=http%3A%2F%2Fevil.example&token={t}"),
                "plain http",
            ),
            (format!("ftp://proctor.example.fr/#{t}"), "scheme"),
            (
                "cloeconnect://launch?server=https%3A%2F%2Fa.example&token=clt_x.%%%".to_owned(),
                "incomplet",
            ),
        ] {
            let e = format!("{:#}", parse(&link).unwrap_err());
            assert!(e.contains(why), "{link}: {e}");
        }
    }
}
