//! The exam platform's launch link, as the operating system hands it to
//! `capture-agent launch LINK` (the `cloeconnect:` scheme is registered by the package's
//! `.desktop` file):
//!
//! - `cloeconnect://launch?server=https%3A%2F%2Fproctor.example.fr&token=clt_…`
//! - `https://proctor.example.fr/launch#clt_…` (the server is the link's origin; the token
//!   rides in the fragment, which browsers never send to any server).

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
            let query = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
            let server = query("server").context("the launch link names no server")?;
            (check_server_url(&server)?, query("token").context("the launch link carries no token")?)
        }
        "https" | "http" => {
            let token = url.fragment().filter(|f| !f.is_empty()).context("the launch link carries no token")?.to_owned();
            let origin = url.origin().ascii_serialization();
            (check_server_url(&format!("{origin}/"))?, token)
        }
        other => bail!("unknown launch link scheme {other:?}"),
    };
    protocol::LaunchToken::parse(&token).map_err(|e| anyhow::anyhow!("{} ({e})", crate::messages::current().token_malformed))?;
    Ok(Launch { server, token })
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
        let scheme = format!("cloeconnect://launch?server=https%3A%2F%2Fproctor.example.fr%3A8443&token={t}");
        assert_eq!(parse(&scheme).unwrap(), Launch { server: Url::parse("https://proctor.example.fr:8443").unwrap(), token: t.clone() });
        let web = format!("https://proctor.example.fr/launch#{t}");
        assert_eq!(parse(&web).unwrap(), Launch { server: Url::parse("https://proctor.example.fr/").unwrap(), token: t.clone() });
        // A loopback server over plain HTTP, for the demo.
        assert!(parse(&format!("cloeconnect://launch?server=http%3A%2F%2F127.0.0.1%3A8443&token={t}")).is_ok());
    }

    #[test]
    fn bad_links_are_refused_with_a_reason() {
        let t = token();
        for (link, why) in [
            ("not a link".to_owned(), "not a link"),
            (format!("cloeconnect://launch?token={t}"), "no server"),
            ("cloeconnect://launch?server=https%3A%2F%2Fa.example".to_owned(), "no token"),
            ("https://proctor.example.fr/launch".to_owned(), "no token"),
            (format!("cloeconnect://launch?server=http%3A%2F%2Fevil.example&token={t}"), "plain http"),
            (format!("ftp://proctor.example.fr/#{t}"), "scheme"),
            ("cloeconnect://launch?server=https%3A%2F%2Fa.example&token=clt_x.%%%".to_owned(), "incomplet"),
        ] {
            let e = format!("{:#}", parse(&link).unwrap_err());
            assert!(e.contains(why), "{link}: {e}");
        }
    }
}
