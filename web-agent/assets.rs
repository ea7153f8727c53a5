//! The browser agent, as the server serves it on the public listener under `/launch`: the
//! page, the one bundled script (built from `src/` by `npm run build`, committed, checked
//! against its sources by `test/bundle.test.js`) and its security policy. Words and
//! stylesheet come from `candidate-ui`, shared with the native agent.

/// The page's shell: its own steps (loading, unsupported browser, launch code, resume,
/// permission) and the `<!--header-->` and `<!--steps-->` markers, which the server fills
/// with what both agents share (`candidate_ui::compose_page`).
pub const INDEX_HTML: &str = include_str!("page/index.html");
pub const AGENT_JS: &str = include_str!("dist/agent.js");

/// Only our own script and styles, nothing inline, no eval, and the page talks to the
/// server that served it and to nobody else (`connect-src 'self'`); the camera's preview
/// is a `MediaStream`, the thumbnails `blob:`.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; media-src 'self' blob: mediastream:; \
connect-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page may use the camera and microphone itself; nothing it embeds may.
pub const PERMISSIONS_POLICY: &str =
    "camera=(self), microphone=(self), display-capture=(), geolocation=()";
